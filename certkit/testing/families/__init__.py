"""Tiny random checkpoints of the major VLM families, built from their configs with their real processor
classes and a word-level tokenizer trained in-process (nothing is downloaded).

This module is the registry: :func:`build` ``(name, directory) -> directory`` ``save_pretrained``s a model and its
processor; :class:`certkit.models.VisionLanguageModel.from_pretrained` loads them back like any checkpoint (with
:data:`SETTINGS`). Each group of related families has its module (:mod:`~.llava`, :mod:`~.gemma`, :mod:`~.mllama`,
:mod:`~.idefics`, :mod:`~.aria`, :mod:`~.pixtral`, :mod:`~.qwen`, :mod:`~.internvl`), each family there a
``build_<family>(directory)``; what they share is :mod:`~.parts`. Each chat template is a short one of the family's
own shape (its role markers and image placeholder), not the full published template. :data:`CPU_FAMILIES` build and
run with transformers alone; :data:`TORCHVISION_FAMILIES` need a torchvision that imports beside the installed torch
(:func:`torchvision_ok`). Every pad id, at every config level (Idefics3 and SmolVLM keep a top-level one whose default,
128002, is past a tiny vocabulary), is the tokenizer's: torch refuses an embedding whose padding index is past its rows.
"""

from __future__ import annotations

import importlib.util

from . import aria, gemma, idefics, internvl, llava, mllama, pixtral, qwen

#: family name -> its builder, ``builder(directory) -> str``
BUILDERS = {
    "llava": llava.build_llava, "llava_next": llava.build_llava_next, "gemma3": gemma.build_gemma3,
    "paligemma": gemma.build_paligemma, "mllama": mllama.build_mllama, "idefics3": idefics.build_idefics3,
    "aria": aria.build_aria, "pixtral": pixtral.build_pixtral, "mistral3": pixtral.build_mistral3,
    "qwen2_vl": qwen.build_qwen2_vl, "qwen2_5_vl": qwen.build_qwen2_5_vl, "qwen3_vl": qwen.build_qwen3_vl,
    "llava_onevision": llava.build_llava_onevision, "smolvlm": idefics.build_smolvlm, "internvl": internvl.build_internvl,
}

#: the families whose processors need only transformers, and those whose processors need torchvision
CPU_FAMILIES = ["llava", "llava_next", "gemma3", "paligemma", "mllama", "idefics3", "aria"]
TORCHVISION_FAMILIES = ["pixtral", "mistral3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "smolvlm", "internvl"]

#: settings a family's checkpoint needs at load time (what a user of the real checkpoint would pass too)
SETTINGS = {"aria": aria.SETTINGS}


def torchvision_ok() -> bool:
    """Whether torchvision is installed and imports (the registry's CUDA torchvision beside a CPU torch does not)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def build(name: str, directory) -> str:
    """Build family ``name`` (one of :data:`CPU_FAMILIES` or :data:`TORCHVISION_FAMILIES`) into ``directory``; returns
    it as a string. KeyError for another name."""
    if name not in CPU_FAMILIES + TORCHVISION_FAMILIES:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(CPU_FAMILIES + TORCHVISION_FAMILIES)}")
    return BUILDERS[name](directory)
