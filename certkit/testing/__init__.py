"""Tiny real models for smoke audits: one tiny-LLaVA builder and small torch classifiers.

:func:`tiny_llava` builds a real transformers ``LlavaForConditionalGeneration`` (CLIP vision tower, Llama text
tower) from its configs, with a tokenizer made in-process with ``tokenizers`` and a real ``LlavaProcessor``.
By default the tokenizer is byte-level (:func:`byte_tokenizer`): it spells any text, so a smoke audit reads the
suite's own prompts; ``words=`` gives a word-level one (:func:`word_tokenizer`) instead. It guarantees:

* offline: nothing is downloaded, no file is read;
* deterministic: the same arguments and ``seed`` give the same weights, tokenizer and processor, bit for bit
  (the weights are drawn from ``torch.manual_seed(seed)`` after the configs are built);
* a real architecture: the model and processor are the classes a published LLaVA checkpoint loads into, so
  :meth:`certkit.models.VisionLanguageModel.from_pretrained` reads a :func:`save_tiny_llava` folder like any other.

A user's CI can certify one against a small suite in seconds, a smoke audit of the whole pipeline (encoding,
noise, generation, oracle, certificate, report) before the real model's audit::

    from certkit.models import VisionLanguageModel
    from certkit.testing import save_tiny_llava

    model = VisionLanguageModel.from_pretrained(save_tiny_llava(tmp_path / "llava"), max_new_tokens=8)

The demo's assistant, the project's tests, benchmarks and ``scripts/tiny_llava.py`` all build theirs here, each
with its own sizes. This module imports only torch (transformers and tokenizers on call) and nothing from the
rest of certkit, so a script may load it by path in a virtualenv without certkit.
"""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

import torch

__all__ = ["WORDS", "CHAT_TEMPLATE", "SPECIALS", "byte_tokenizer", "word_tokenizer", "tiny_llava", "save_tiny_llava",
           "BrightnessClassifier", "KeywordImageClassifier", "SmallGuard", "CoinFlip"]

#: a few words of pick-and-place requests and refusals: the byte-level tokenizer's merges are trained on them
WORDS = (
    "USER : ASSISTANT pick up place hand over the a red green blue cube cup knife ball to on table person "
    "please now I cannot help with that refuse it is"
).split()
#: ids 0..4 of every tokenizer made here
SPECIALS = ("<unk>", "<pad>", "<s>", "</s>", "<image>")
#: a LLaVA-1.5-shaped chat template in the vocabulary's words: ``USER : <image> {text} ASSISTANT :``
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER : "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " ASSISTANT :{% endif %}{% endfor %}"
)


def word_tokenizer(words=WORDS, *, chat_template: str = CHAT_TEMPLATE, train: bool = True, vocab_size: int | None = None,
                   split_punctuation: bool = True, specials=("<image>",), unk: str = "<unk>", pad: str = "<pad>",
                   bos: str | None = "<s>", eos: str = "</s>", extra: dict | None = None, cls=None):
    """A word-level fast tokenizer (``cls``, default ``PreTrainedTokenizerFast``): the first ids are ``unk``, ``pad``,
    ``bos`` (None: none) and ``eos``, then ``specials`` as additional special tokens, then ``words``; with the
    defaults, ids 0..4 are :data:`SPECIALS`. ``extra`` names special tokens by role (``{"image_token": "<image>"}``),
    as some processors read them.

    ``train=True`` trains the vocabulary on ``words`` with ``tokenizers``' ``WordLevelTrainer`` (most frequent
    first, then alphabetical; at most ``vocab_size`` tokens); ``train=False`` keeps ``words`` in their order
    (duplicates dropped). ``split_punctuation`` pre-tokenizes with ``Whitespace`` (``"cube."`` is two tokens),
    else with ``WhitespaceSplit`` (one). Unknown words map to ``unk``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base = [t for t in (unk, pad, bos, eos) if t]
    added = [t for t in specials if t not in base]
    if train:
        tok = Tokenizer(models.WordLevel(unk_token=unk))
    else:
        tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(dict.fromkeys([*base, *added, *words]))}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace() if split_punctuation else pre_tokenizers.WhitespaceSplit()
    if train:
        size = {} if vocab_size is None else {"vocab_size": vocab_size}
        tok.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(special_tokens=base + added, **size))
    fast = (cls or PreTrainedTokenizerFast)(tokenizer_object=tok, unk_token=unk, pad_token=pad, bos_token=bos, eos_token=eos,
                                            extra_special_tokens=extra or {})
    fast.add_special_tokens({"additional_special_tokens": added})
    fast.chat_template = chat_template
    return fast


def byte_tokenizer(corpus=WORDS, *, chat_template: str = CHAT_TEMPLATE, vocab_size: int | None = None,
                   specials=("<image>",), unk: str = "<unk>", pad: str = "<pad>", bos: str | None = "<s>", eos: str = "</s>",
                   extra: dict | None = None, cls=None):
    """A byte-level BPE fast tokenizer (``cls``, default ``PreTrainedTokenizerFast``) that spells any text: its
    alphabet is the 256 bytes (GPT-2's byte-level mapping), so no character is unknown, and the merges trained with
    ``tokenizers``' ``BpeTrainer`` on the words of ``corpus`` make those words one token each, and a space and an
    ASCII letter, digit or punctuation mark one token (at most ``vocab_size`` tokens in all). The ids are laid out as
    :func:`word_tokenizer`'s: ``unk`` (kept for the layout, never produced), ``pad``, ``bos`` and ``eos``, then
    ``specials`` as additional special tokens (with the defaults, ids 0..4 are :data:`SPECIALS`), then the bytes and
    merges. Offsets leave out the space a token carries, so a prompt's tokens are located by their characters.
    Deterministic: the same arguments give the same tokenizer, bit for bit."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    base = [t for t in (unk, pad, bos, eos) if t]
    added = [t for t in specials if t not in base]
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    size = {} if vocab_size is None else {"vocab_size": vocab_size}
    # a space merged with the character after it, as in published byte-level vocabularies: a lone space's token has an
    # empty character span, so it could not be placed in the prompt
    words = [" ".join(corpus), " " + " ".join(string.ascii_letters + string.digits + string.punctuation)]
    tok.train_from_iterator(words, trainers.BpeTrainer(special_tokens=base + added, show_progress=False,
                                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **size))
    fast = (cls or PreTrainedTokenizerFast)(tokenizer_object=tok, unk_token=unk, pad_token=pad, bos_token=bos, eos_token=eos,
                                            extra_special_tokens=extra or {})
    fast.add_special_tokens({"additional_special_tokens": added})
    fast.chat_template = chat_template
    return fast


def tiny_llava(seed: int = 0, *, words=None, train_tokenizer: bool = True, vocab_size: int | None = None,
               split_punctuation: bool = True, chat_template: str = CHAT_TEMPLATE,
               image_size: int = 32, patch_size: int = 8, image_mean=None, image_std=None, pil: bool = True,
               vision_hidden: int = 32, vision_layers: int = 2, vision_heads: int = 2, vision_intermediate: int | None = None,
               projection_dim: int | None = None, vision_feature_layer: int = -1,
               hidden: int = 32, layers: int = 2, heads: int = 2, intermediate: int | None = None, head_dim: int | None = None,
               max_positions: int = 1024, vocab_multiple: int = 1, generation_ids: bool = False,
               dtype: torch.dtype | None = None, device=None):
    """A randomly initialised tiny LLaVA and its processor: ``(model, processor)``, the model in train mode.

    Tokenizer: :func:`byte_tokenizer` (``vocab_size``, ``chat_template``), which spells any prompt; with ``words``,
    :func:`word_tokenizer` of those words (``train_tokenizer``, ``vocab_size``, ``split_punctuation``,
    ``chat_template``), which spells only them. Images: a CLIP image processor resizing and cropping to ``image_size`` (``image_mean`` /
    ``image_std`` default to CLIP's; ``pil=False`` takes transformers' default backend, torchvision where
    installed), cut into ``patch_size`` patches plus the class token. Vision tower: CLIP of ``vision_hidden``
    width, ``vision_layers`` layers, ``vision_heads`` heads, MLP ``vision_intermediate`` (default twice the
    width), projection ``projection_dim`` (default the width), features of layer ``vision_feature_layer``. Text
    tower: Llama of ``hidden`` width, ``layers`` layers, ``heads`` query and key-value heads of ``head_dim``
    (default ``hidden // heads``), MLP ``intermediate`` (default twice the width), ``max_positions`` positions and
    a vocabulary rounded up to a multiple of ``vocab_multiple``. ``generation_ids`` writes the tokenizer's pad and
    eos ids into the generation config. The weights are drawn after ``torch.manual_seed(seed)``, in ``dtype``
    (default torch's) on ``device`` (default torch's)."""
    import transformers
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    if words is None:
        tok = byte_tokenizer(chat_template=chat_template, vocab_size=vocab_size)
    else:
        tok = word_tokenizer(words, chat_template=chat_template, train=train_tokenizer, vocab_size=vocab_size,
                             split_punctuation=split_punctuation)
    normalise = {k: v for k, v in (("image_mean", image_mean), ("image_std", image_std)) if v is not None}
    image_processor = getattr(transformers, "CLIPImageProcessorPil" if pil else "CLIPImageProcessor")(  # no fallback warning for PIL
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}, **normalise)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch_size,
                               vision_feature_select_strategy="default", image_token="<image>", num_additional_image_tokens=1,
                               chat_template=chat_template)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=vision_intermediate or 2 * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=vision_heads, image_size=image_size,
                              patch_size=patch_size, projection_dim=projection_dim or vision_hidden)
    text = LlamaConfig(vocab_size=-(-len(tok) // vocab_multiple) * vocab_multiple, hidden_size=hidden,
                       intermediate_size=intermediate or 2 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=heads, **({} if head_dim is None else {"head_dim": head_dim}),
                       max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=vision_feature_layer, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype or default)
    try:
        with torch.device(device) if device is not None else contextlib.nullcontext():
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    if generation_ids:
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
    return model, processor


def save_tiny_llava(directory, seed: int = 0, *, vllm_layout: bool = False, **options) -> str:
    """:func:`tiny_llava` (``seed``, ``options``) saved with ``save_pretrained`` (model and processor) into
    ``directory``; returns its path as a string. ``vllm_layout`` renames the vision tower's weights
    ``vision_tower.*`` (transformers 5) to ``vision_tower.vision_model.*``, the layout of published LLaVA
    checkpoints that vLLM reads (transformers loads both)."""
    from transformers.utils import logging as hf_logging

    model, processor = tiny_llava(seed, **options)
    # no "Writing model shards" bar in a smoke run's output (certkit.models.base.quiet_progress_bars; this module
    # imports nothing from certkit)
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.eval().save_pretrained(directory)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(directory)
    if vllm_layout:
        _legacy_vision_keys(Path(directory) / "model.safetensors")
    return str(directory)


def _legacy_vision_keys(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    prefix, legacy = "vision_tower.", "vision_tower.vision_model."
    state = {(legacy + k[len(prefix):] if k.startswith(prefix) and not k.startswith(legacy) else k): v for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt"})


class BrightnessClassifier(torch.nn.Module):
    """Class 1 ("bright") iff the mean pixel exceeds 0.5; ignores the text. Deterministic and real."""

    def forward(self, ids, images):
        """(B, 2) logits ``[-s, s]`` with ``s`` = mean pixel - 0.5: class 1 wins iff ``s > 0``."""
        score = images.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-score, score], dim=1)


class KeywordImageClassifier(torch.nn.Module):
    """'unsafe' iff token ``trigger`` appears in the prompt AND the image is bright: an interaction-only rule."""

    def __init__(self, trigger: int):
        super().__init__()
        self.register_buffer("trigger", torch.tensor(trigger))

    def forward(self, ids, images):
        """(B, 2) logits ``[-s, s]``, ``s = +0.5`` where the trigger token occurs and the mean pixel exceeds 0.5,
        else ``-0.5``."""
        has = (ids == self.trigger).any(dim=1).float()
        bright = (images.mean(dim=(1, 2, 3)) > 0.5).float()
        score = has * bright - 0.5
        return torch.stack([-score, score], dim=1)


class SmallGuard(torch.nn.Module):
    """A small multimodal guard of realistic shape: conv image tower + token embedding bag + MLP head, its weights
    drawn after ``torch.manual_seed(seed)``."""

    def __init__(self, vocab_size: int = 64, classes: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        )
        self.embed = torch.nn.EmbeddingBag(vocab_size, 64, mode="mean")
        self.head = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, classes))

    def forward(self, ids, images):
        """(B, classes) logits from the pooled image features and the mean embedding of the ids."""
        return self.head(torch.cat([self.conv(images).flatten(1), self.embed(ids)], dim=1))


class CoinFlip(torch.nn.Module):
    """Class 1 ("bright") iff the first pixel (channel 0, top left) exceeds 0.5: on an image whose first pixel is
    0.5, any Gaussian noise makes it a fair coin (p_A = 1/2 exactly), a real model that is right half the time."""

    def forward(self, ids, images):
        """(B, 2) logits ``[-s, s]`` with ``s`` = first pixel - 0.5."""
        s = images[:, 0, 0, 0] - 0.5
        return torch.stack([-s, s], 1)
