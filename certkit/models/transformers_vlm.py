"""Any vision-language model transformers loads with ``AutoModelForImageTextToText``, run through its own processor.

Encoding (once per case) is :class:`~certkit.models.encoding.ProcessorEncoding`: the family's chat template and
processor give the token ids, the editable prompt positions and every other model input.

Running (once per batch of noisy samples): the noisy images go through the same processor with the same
text, every input the processor returns reaches the model (image sizes, grids, tile masks, token types,
cross-attention masks...), and only ``input_ids`` is replaced by the noisy ids.

Guarantee: the smoothing noise is added to the case's own pixels, at the case's resolution, where the
certified l2 radius is measured. What follows the noise is a fixed function of the noisy image (a clamp, 8-bit
rounding for PIL processors, the family's processor), part of the smoothed classifier, so the certificate
holds for it as stated.

Two ways to read the model: ``labels=None`` generates an answer (``output_kind = "text"``, read by an
oracle); ``labels={"safe": "safe", "unsafe": "unsafe"}`` reads one forward pass's next-token logits and
answers with the label whose word's first token scores highest (``output_kind = "label"``): a guard VLM
used as a classifier, the way Llama Guard 3 Vision or LlavaGuard are used.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .base import (
    EncodedCase,
    ModelError,
    code_fingerprint,
    config_fingerprint,
    fingerprint_module,
    module_device,
    module_dtype,
    quiet_progress_bars,
    resolve_device,
    runtime,
    to_device,
)
from .encoding import ProcessorEncoding
from .settled import settled_text

__all__ = ["VisionLanguageModel", "VisionLanguageGenerator"]

#: what a processor may return that is a training target, not an input (PaliGemma's ``labels``)
_NOT_MODEL_INPUTS = frozenset({"labels"})


def _hash_directory(path: Path) -> str:
    """SHA-256 over the weight, config and tokenizer files of a model directory (names and bytes)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not any(p.suffix in (".safetensors", ".bin", ".pt") for p in files):
        raise ModelError(f"model directory {str(path)!r} holds no weight files (*.safetensors / *.bin)")
    for p in files:
        h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _load_model(path: Path, kwargs: dict):
    """The model and its loading info. ShieldGemma 2 checkpoints keep their weights in the layout of their image
    classifier, which ``AutoModelForImageTextToText`` does not read: load the classifier and take its Gemma 3 model
    (the same network whose Yes/No next-token logits the classifier reads)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs.get("trust_remote_code", False))
    if getattr(config, "model_type", None) == "shieldgemma2":
        from transformers import ShieldGemma2ForImageClassification

        classifier, info = ShieldGemma2ForImageClassification.from_pretrained(path, output_loading_info=True, **kwargs)
        return classifier.model, info
    return AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True, **kwargs)


class VisionLanguageModel:
    """Adapter around a loaded transformers VLM (any ``AutoModelForImageTextToText`` family) and its processor.

    ``labels``: None to generate answers; or a mapping label -> word (a sequence means label = word) to read
    the label from one forward pass (guard VLMs). ``prompt_format`` wraps the case prompt (``{prompt}`` marks
    it; only the prompt's own tokens are editable); ``answer_prefix`` is appended after the generation prompt
    (e.g. the opening of a guard's structured answer). Generation settings, the chat template, the processor
    and tokenizer, the model's code and config and the weights all go into :attr:`fingerprint` (``weights_fingerprint``,
    when given, stands for the weights: :meth:`from_pretrained` passes its files' hash). :class:`ModelError` for a
    ``max_new_tokens`` or ``batch_size`` below 1, label words the tokenizer cannot tell apart, or a processor
    :class:`~certkit.models.encoding.ProcessorEncoding` refuses.
    """

    def __init__(
        self,
        model,
        processor,
        *,
        labels: Mapping[str, str] | Sequence[str] | None = None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        system_prompt: str | None = None,
        prompt_format: str = "{prompt}",
        answer_prefix: str = "",
        batch_size: int = 16,
        weights_fingerprint: str | None = None,
        processor_kwargs: Mapping | None = None,
    ):
        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        self.encoding = ProcessorEncoding(processor, model.config, system_prompt=system_prompt, prompt_format=prompt_format,
                                          answer_prefix=answer_prefix, processor_kwargs=processor_kwargs)
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = self.encoding.tokenizer
        # where the model reads its inputs (the first shard of a model spread over devices) and the dtype it
        # computes in: every processor output goes there, floating ones in that dtype
        self.device = module_device(model)
        self.dtype = module_dtype(model)
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.batch_size = int(batch_size)
        self.processor_kwargs = self.encoding.processor_kwargs
        self.alphabet = torch.tensor(self.encoding.alphabet, dtype=torch.long, device=self.device)
        self.mask_id = self.encoding.mask_id
        self.labels, label_ids = self.encoding.label_token_ids(labels)
        self._label_token_ids = torch.tensor(label_ids, dtype=torch.long, device=self.device)
        self.output_kind = "text" if self.labels is None else "label"
        # label mode reads the last position only: the models that take ``logits_to_keep`` skip the vocabulary
        # projection of every other position (same logits; tests/models/test_families.py checks them against the full ones)
        keep = self.labels is not None and "logits_to_keep" in inspect.signature(model.forward).parameters
        self._label_kwargs = {"logits_to_keep": 1} if keep else {}
        self.max_context = self._max_context()
        #: the settled text of a generation so far (None: the tokenizer's decode is not proved prefix-stable, and
        #: ``run`` never stops a sample early); :attr:`generated_tokens` counts every new token ``run`` generated for a live
        #: sample, :attr:`computed_tokens` the positions generate computed (a batch runs until its last sample ends, and
        #: transformers keeps computing, and padding, the rows that ended: steps times rows)
        self.settled = settled_text(self.tokenizer) if self.labels is None else None
        self.generated_tokens = self.computed_tokens = 0
        settings = {
            **self.encoding.settings(),
            "output": self.output_kind,
            "labels": dict(zip(self.labels, label_ids)) if self.labels else None,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "dtype": str(self.dtype),
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "model_code": code_fingerprint(model),
            "model_config": config_fingerprint(model.config),
        }
        if self.labels is not None:  # the last position alone may round differently from the full forward's
            settings["label_read"] = "logits_to_keep=1" if keep else "full logits"
        weights = weights_fingerprint if weights_fingerprint is not None else fingerprint_module(model)
        self.weights_fingerprint = weights
        self.fingerprint = hashlib.sha256((weights + json.dumps(settings, sort_keys=True, default=str)).encode()).hexdigest()
        self.name = getattr(model.config, "_name_or_path", "") or type(model).__name__

    @classmethod
    def from_pretrained(
        cls,
        path,
        *,
        dtype="auto",
        device=None,
        device_map=None,
        trust_remote_code: bool = False,
        **settings,
    ) -> "VisionLanguageModel":
        """Load model and processor from a local directory with the Auto classes.

        ``dtype``: "auto" (the checkpoint's), or a torch dtype / name ("bfloat16"). ``device_map`` goes to
        accelerate (e.g. "auto" to shard a large model); otherwise the model moves to ``device`` (default:
        the first GPU if any, else CPU). ``trust_remote_code`` stays False unless you set it. The fingerprint's
        weights part is the SHA-256 of the directory's files. :class:`ModelError` for a path that is not a
        checkpoint directory, an unknown dtype, a checkpoint that cannot be loaded, or one missing weights of the
        model (transformers would initialise them at random).
        """
        from transformers import AutoProcessor

        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"model path {str(path)!r} is not a directory; pass the folder written by save_pretrained")
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {str(path)!r} has no config.json; is it a transformers checkpoint?")
        if isinstance(dtype, str) and dtype != "auto":
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ModelError(f"dtype {dtype!r} is not a torch dtype; use e.g. 'bfloat16', 'float16', 'float32' or 'auto'")
            dtype = getattr(torch, dtype)
        fingerprint = _hash_directory(path)
        try:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
            kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
            if device_map is not None:
                kwargs["device_map"] = device_map
            with quiet_progress_bars():
                model, info = _load_model(path, kwargs)
        except ImportError as exc:
            raise ModelError(f"cannot load the processor or model in {str(path)!r}: {exc}. Families whose processors use "
                             "torchvision (Qwen-VL, LLaVA-OneVision, SmolVLM, InternVL, Pixtral) need torch and torchvision "
                             "builds that match (pip install torch torchvision from the same index)") from None
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load a vision-language model from {str(path)!r}: {exc}") from None
        missing = list(info.get("missing_keys") or [])
        if missing:  # transformers would initialise them at random: certkit would certify a model nobody trained
            raise ModelError(f"the checkpoint in {str(path)!r} holds no weights for {len(missing)} parameter(s) of "
                             f"{type(model).__name__} (e.g. {', '.join(sorted(missing)[:3])}); it was saved for another "
                             "architecture or is incomplete, and those weights would be random. Save the model with its "
                             "own class's save_pretrained")
        if device_map is None:
            model = model.to(resolve_device(device))
        return cls(model, processor, weights_fingerprint=fingerprint, **settings)

    @property
    def runtime(self) -> dict:
        """The device, software and kernel flags the labels are computed with (see :func:`certkit.models.base.runtime`)."""
        return runtime(self.device)

    def _max_context(self) -> int | None:
        cfg = getattr(self.model.config, "text_config", self.model.config)
        return getattr(cfg, "max_position_embeddings", None)

    # ------------------------------------------------------------------ encoding

    def templated(self, prompt: str) -> tuple[str, int, int]:
        """The full text the processor sees for ``prompt``, and the prompt's character span in it."""
        return self.encoding.templated(prompt)

    def encode(self, case) -> EncodedCase:
        """The case through the family's processor (:meth:`ProcessorEncoding.encode`), on the model's input device;
        :class:`ModelError` where its tokens plus ``max_new_tokens`` exceed the model's context."""
        enc = self.encoding.encode(case, self.device)
        if self.max_context is not None and enc.ids.numel() + self.max_new_tokens > self.max_context:
            raise ModelError(
                f"case {case.id!r}: prompt is too long: {enc.ids.numel()} input tokens + {self.max_new_tokens} new tokens exceed "
                f"the model's context of {self.max_context}; shorten the prompt or lower max_new_tokens"
            )
        return enc

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) noisy float images -> the ``pixel_values`` the processor makes of them (for training on noise)."""
        images, kwargs = self.encoding.image_batch(self.encoding.rgb(images))
        return self.processor.image_processor(images=images, return_tensors="pt", **kwargs)["pixel_values"].to(self.device, self.dtype)

    def model_inputs(self, encoded: EncodedCase, ids: torch.Tensor, images: torch.Tensor) -> dict:
        """Every input the processor returns for the noisy ``images``, with ``input_ids`` replaced by the noisy ``ids``."""
        inputs = self.encoding.checked_inputs(encoded, images)
        out = {key: to_device(value, self.device, self.dtype) for key, value in inputs.items() if key not in _NOT_MODEL_INPUTS}
        out["input_ids"] = ids.to(self.device)
        out["attention_mask"] = torch.ones_like(out["input_ids"])
        return out

    # ------------------------------------------------------------------ running

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int = 0, *, encoded: EncodedCase, decide=None) -> list[str]:
        """One output per sample, in order. Label mode: the label whose word's first token has the highest last-position
        logit (:class:`ModelError` on NaN logits). Otherwise the decoded new tokens, special tokens skipped: greedy, or
        sampled after ``torch.manual_seed(seed)`` when ``do_sample``. :class:`ModelError` where the processor lays out
        a noisy image's tokens differently from the clean one's.

        ``decide`` (an oracle's :meth:`~certkit.oracles.Oracle.decide_prefix`): each sample stops generating as soon as
        ``decide`` returns a label on its settled text (:mod:`certkit.models.settled`: a prefix of every longer
        generation's decode), so its output is shorter but, by the oracle's contract, has the label the full answer has.
        Ignored where the tokenizer's decode is not proved prefix-stable (:attr:`settled` is None). The new tokens each
        sample generated (up to its end of sequence, its decision or ``max_new_tokens``) are added to
        :attr:`generated_tokens`."""
        inputs = self.model_inputs(encoded, ids, images)
        if self.labels is not None:
            logits = self.model(**inputs, **self._label_kwargs).logits[:, -1, :]
            # the logits are where the model's last shard left them, which need not be self.device
            scores = logits[:, self._label_token_ids.to(logits.device)].float()
            if bool(torch.isnan(scores).any()):
                raise ModelError("the model returned NaN logits for the label tokens of a noisy sample; certkit will not guess its label")
            return [self.labels[i] for i in scores.argmax(dim=1).tolist()]
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "pad_token_id": self.tokenizer.pad_token_id}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
            torch.manual_seed(seed)
        from transformers import StoppingCriteriaList

        stop = _PrefixStop(ids.shape[1], decide if self.settled is not None else None, self.settled, self._eos_ids())
        out = self.model.generate(**inputs, **kwargs, stopping_criteria=StoppingCriteriaList([stop]))
        self.generated_tokens += stop.tokens
        self.computed_tokens += stop.steps * ids.shape[0]
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)

    def _eos_ids(self) -> list[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        return [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


class _PrefixStop:
    """A transformers stopping criterion (its interface, duck-typed: subclassing ``StoppingCriteria`` would import
    transformers with this module), per sequence (transformers pads a finished row from then on): a row stops once
    ``decide`` labels its settled text. Counts in :attr:`tokens` the tokens the rows generated while live (a row is live
    until its end of sequence or its decision), in :attr:`steps` the generation steps. With ``decide`` None it stops
    nothing and only counts."""

    def __init__(self, start: int, decide, settled, eos_ids: list[int]):
        self.start, self.decide, self.settled = start, decide, settled
        self.eos = torch.tensor(eos_ids, dtype=torch.long)
        self.live: torch.Tensor | None = None
        self.tokens = self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        """A (batch,) bool tensor: True for the rows decided at this step."""
        if self.live is None:
            self.live = torch.ones(input_ids.shape[0], dtype=torch.bool)
        self.tokens += int(self.live.sum())
        new = input_ids[:, self.start :].cpu()
        decided = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        self.steps += 1
        live = torch.nonzero(self.live).flatten().tolist()
        if self.decide is not None and live:
            for row, text in zip(live, self.settled.batch(new[live].tolist())):
                decided[row] = self.decide(text) is not None
        ended = torch.isin(new[:, -1], self.eos) if self.eos.numel() else torch.zeros_like(decided)
        self.live &= ~(decided | ended)
        return decided.to(input_ids.device)


#: The name this adapter had while it only generated; it is the same class.
VisionLanguageGenerator = VisionLanguageModel
