"""Any vision-language model transformers loads with ``AutoModelForImageTextToText``, run through its own processor.

Encoding (once per case): the case prompt is placed in the family's chat template (optionally wrapped in
``prompt_format``, e.g. a guard's policy text), and the family's processor turns the templated text and the
clean image into token ids and every other model input. The positions of the user's prompt, the only ones
text noise may touch, are located from the tokenizer's character offsets on the templated text and found
again in the processor's ids (processors expand image placeholders, insert tiles, rows and image markers
before the prompt, never inside it); the located tokens are decoded back and must spell the prompt.

Running (once per batch of noisy samples): the noisy images go through the same processor with the same
text, every input the processor returns reaches the model (image sizes, grids, tile masks, token types,
cross-attention masks...), and only ``input_ids`` is replaced by the noisy ids.

Guarantee: the smoothing noise is added to the case's own pixels, at the case's resolution, where the
certified l2 radius is measured. What follows the noise is a fixed function of the noisy image: a clamp to
[0, 1], rounding to 8 bits for processors with the PIL backend (which only takes 8-bit images; torchvision
processors take the float tensor on the model's device), and the family's processor. A fixed function
applied after the noise is part of the smoothed classifier, so the certificate holds for it as stated.

Two ways to read the model: ``labels=None`` generates an answer (``output_kind = "text"``, read by an
oracle); ``labels={"safe": "safe", "unsafe": "unsafe"}`` reads one forward pass's next-token logits and
answers with the label whose word's first token scores highest (``output_kind = "label"``): a guard VLM
used as a classifier, the way Llama Guard 3 Vision or LlavaGuard are used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .base import EncodedCase, ModelError, code_fingerprint, resolve_device

__all__ = ["VisionLanguageModel", "VisionLanguageGenerator"]

_SENTINEL = "\u2063CERTKIT_PROMPT\u2063"
_WHITESPACE = re.compile(r"\s+")
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


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        payload = backend.to_str()
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps({"special": sorted(map(str, tokenizer.all_special_tokens)), "class": type(tokenizer).__name__})
    return hashlib.sha256((payload + extra).encode()).hexdigest()


def _processor_settings(processor) -> str:
    try:
        return processor.to_json_string()
    except Exception:  # a processor that cannot serialise itself: fall back to its sub-processors' dicts
        image_processor = getattr(processor, "image_processor", None)
        return json.dumps(getattr(image_processor, "__dict__", {}), sort_keys=True, default=str)


def _rightmost(haystack: list[int], needle: list[int]) -> int | None:
    """Start of the last occurrence of ``needle`` in ``haystack``."""
    n = len(needle)
    for k in range(len(haystack) - n, -1, -1):
        if haystack[k : k + n] == needle:
            return k
    return None


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
    and tokenizer, the model's code and config and the weights all go into :attr:`fingerprint`.
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
        if getattr(processor, "chat_template", None) is None:
            raise ModelError("the processor has no chat_template; set processor.chat_template (a Jinja string) before certifying")
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or getattr(processor, "image_processor", None) is None:
            raise ModelError(f"{type(processor).__name__} is not a vision-language processor (it needs a tokenizer and an image processor)")
        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(prompt_format, str) or prompt_format.count("{prompt}") != 1:
            raise ModelError(f"prompt_format must contain '{{prompt}}' exactly once, got {prompt_format!r}")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.system_prompt = system_prompt
        self.prompt_format = prompt_format
        self.answer_prefix = str(answer_prefix)
        self.batch_size = int(batch_size)
        self.processor_kwargs = dict(processor_kwargs or {})
        self._torch_images = getattr(processor.image_processor, "backend", None) == "torchvision"
        self._call_processor = processor
        if type(processor).__name__ == "ShieldGemma2Processor":
            # its __call__ ignores the text and builds one prompt per policy; its Gemma 3 base reads the text certkit
            # templated (the guard's own chat template around the case prompt, which holds the policy)
            self._call_processor = functools.partial(type(processor).__mro__[1].__call__, processor)
        self._specials = self._special_ids()
        self.alphabet = torch.tensor(sorted(i for i in range(len(tokenizer)) if i not in self._specials), dtype=torch.long, device=self.device)
        self.mask_id = next((i for i in (tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id) if i is not None), None)
        self.labels, self._label_token_ids = self._label_tokens(labels)
        self.output_kind = "text" if self.labels is None else "label"
        self.max_context = self._max_context()
        settings = {
            "output": self.output_kind,
            "labels": dict(zip(self.labels, self._label_token_ids.tolist())) if self.labels else None,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "system_prompt": system_prompt,
            "prompt_format": prompt_format,
            "answer_prefix": self.answer_prefix,
            "processor_kwargs": self.processor_kwargs,
            "dtype": str(self.dtype),
            "chat_template": processor.chat_template,
            "processor": _processor_settings(processor),
            "image_path": "torchvision-float" if self._torch_images else "clamp-uint8-pil",
            "tokenizer": _tokenizer_fingerprint(tokenizer),
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "model_code": code_fingerprint(model),
            "model_config": model.config.to_json_string(use_diff=False),
        }
        weights = weights_fingerprint
        if weights is None:
            from .base import fingerprint_module

            weights = fingerprint_module(model)
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
        the first GPU if any, else CPU). ``trust_remote_code`` stays False unless you set it.
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

    # ------------------------------------------------------------------ set-up

    def _special_ids(self) -> set[int]:
        tok = self.tokenizer
        specials = set(tok.all_special_ids) | {int(i) for i in getattr(tok, "added_tokens_decoder", {}).keys()}
        config = self.model.config
        for key in ("image_token_id", "image_token_index", "boi_token_id", "eoi_token_id", "image_start_token_id",
                    "image_end_token_id", "vision_start_token_id", "vision_end_token_id", "video_token_id"):
            value = getattr(config, key, None)
            if isinstance(value, int):
                specials.add(value)
        return specials

    def _label_tokens(self, labels):
        if labels is None:
            return None, torch.zeros(0, dtype=torch.long)
        if isinstance(labels, str):
            raise ModelError(f"labels must be a mapping label -> word or a list of words, got the string {labels!r}")
        words = dict(labels) if isinstance(labels, Mapping) else {str(w): str(w) for w in labels}
        if len(words) < 2:
            raise ModelError(f"labels needs at least two labels to choose between, got {list(words)}")
        ids = []
        for label, word in words.items():
            toks = self.tokenizer(str(word), add_special_tokens=False)["input_ids"]
            if not toks:
                raise ModelError(f"label {label!r}: the word {word!r} tokenizes to nothing")
            ids.append(int(toks[0]))
        if len(set(ids)) != len(ids):
            clash = [label for label, i in zip(words, ids) if ids.count(i) > 1]
            raise ModelError(f"labels {clash} begin with the same token, so one next-token read cannot tell them apart; "
                             "choose label words whose first tokens differ (e.g. ' safe' / ' unsafe' with the leading space the template leaves)")
        return tuple(str(label) for label in words), torch.tensor(ids, dtype=torch.long, device=self.device)

    def _max_context(self) -> int | None:
        cfg = getattr(self.model.config, "text_config", self.model.config)
        return getattr(cfg, "max_position_embeddings", None)

    def _messages(self, text: str) -> list[dict]:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
        return messages

    # ------------------------------------------------------------------ encoding

    def templated(self, prompt: str) -> tuple[str, int, int]:
        """The full text the processor sees for ``prompt``, and the prompt's character span in it."""
        user_text = self.prompt_format.replace("{prompt}", _SENTINEL)
        templated = self.processor.apply_chat_template(self._messages(user_text), add_generation_prompt=True, tokenize=False)
        templated += self.answer_prefix
        if templated.count(_SENTINEL) != 1:
            raise ModelError("the chat template does not place the user's text exactly once; certkit cannot locate the prompt")
        prefix, suffix = templated.split(_SENTINEL)
        return prefix + prompt + suffix, len(prefix), len(prefix) + len(prompt)

    def encode(self, case) -> EncodedCase:
        full, start, end = self.templated(case.prompt)
        plain = self.tokenizer(full, return_offsets_mapping=True, add_special_tokens=False)
        self._refuse_special_text(plain["input_ids"], plain["offset_mapping"], full, start, end, case.id)
        image = torch.tensor(case.image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 2:
            raise ModelError(f"case {case.id!r}: image of shape {tuple(image.shape)} cannot be read by a VLM; give an RGB or greyscale image of at least 2x2 pixels")
        image = image.to(self.device)
        inputs = self._process(full, self._rgb(image.unsqueeze(0)), case.id)
        ids = inputs["input_ids"][0].to(self.device)
        editable = self._locate(ids.tolist(), plain["input_ids"], plain["offset_mapping"], full, start, end, case.id)
        if self.max_context is not None and ids.numel() + self.max_new_tokens > self.max_context:
            raise ModelError(
                f"case {case.id!r}: prompt is too long: {ids.numel()} input tokens + {self.max_new_tokens} new tokens exceed "
                f"the model's context of {self.max_context}; shorten the prompt or lower max_new_tokens"
            )
        return EncodedCase(ids, editable.to(self.device), image, context=full)

    def _refuse_special_text(self, ids, offsets, full, start, end, case_id) -> None:
        for tid, (a, b) in zip(ids, offsets):
            if tid in self._specials and a < end and b > start:
                text = self.tokenizer.convert_ids_to_tokens(int(tid))
                if tid == self.tokenizer.unk_token_id:
                    raise ModelError(f"case {case_id!r}: this model's tokenizer cannot spell {full[a:b]!r} in the prompt and "
                                     f"reads it as its unknown token {text!r}; an attacker could place that token, but the clean "
                                     "prompt must be in the replacement alphabet: rephrase it")
                raise ModelError(f"case {case_id!r}: the prompt contains {text!r}, which this model's tokenizer reads as a special token "
                                 "(an image placeholder or control token); remove it from the prompt")

    def _locate(self, proc_ids, plain_ids, offsets, full, start, end, case_id) -> torch.Tensor:
        """Editable mask over the processor's ids: the tokens of the templated text that lie inside the prompt,
        found in the processor's ids by matching the text from the prompt's first token to the end."""
        inside = [b > a and a >= start and b <= end for a, b in offsets]
        if not any(inside):
            raise ModelError(f"case {case_id!r}: no token of the prompt could be located in the templated input (is the prompt empty?)")
        first = inside.index(True)
        tail = plain_ids[first:]
        k = _rightmost(proc_ids, tail)
        if k is None:
            raise ModelError(f"case {case_id!r}: the processor's token ids do not contain the prompt as the tokenizer reads it; "
                             f"certkit cannot locate the prompt for {type(self.processor).__name__}")
        editable = np.zeros(len(proc_ids), dtype=bool)
        editable[k : k + len(tail)] = inside[first:]
        want = "".join(full[a:b] for (a, b), ok in zip(offsets, inside) if ok)
        got = self.tokenizer.decode([proc_ids[j] for j in np.flatnonzero(editable)], skip_special_tokens=False)
        if _WHITESPACE.sub("", got) != _WHITESPACE.sub("", want):
            raise ModelError(f"case {case_id!r}: the located prompt tokens decode to {got!r}, not the prompt {want!r} "
                             "(unknown characters?); certkit will not certify a prompt it cannot locate exactly")
        return torch.from_numpy(editable)

    # ------------------------------------------------------------------ images

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) noisy float images -> the ``pixel_values`` the processor makes of them (for training on noise)."""
        images, kwargs = self._image_batch(self._rgb(images))
        return self.processor.image_processor(images=images, return_tensors="pt", **kwargs)["pixel_values"].to(self.device, self.dtype)

    @staticmethod
    def _rgb(images: torch.Tensor) -> torch.Tensor:
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def _image_batch(self, images: torch.Tensor) -> tuple[list, dict]:
        """The fixed function after the noise, up to the processor: clamp to [0, 1]; float tensors on the device
        for torchvision processors, 8-bit HWC arrays for PIL ones."""
        images = images.clamp(0.0, 1.0)
        kwargs = dict(self.processor_kwargs)
        if self._torch_images:
            kwargs.setdefault("do_rescale", False)
            return list(images), kwargs
        return list((images * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()), kwargs

    def _process(self, text: str, images: torch.Tensor, case_id=None):
        """The processor's inputs for ``len(images)`` copies of ``text``, one image each."""
        images, kwargs = self._image_batch(images)
        batch = [[img] for img in images]
        try:
            return self._call_processor(text=[text] * len(batch), images=batch, return_tensors="pt", **kwargs)
        except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as exc:
            where = f"case {case_id!r}: " if case_id is not None else ""
            raise ModelError(f"{where}{type(self.processor).__name__} cannot process this image and prompt: {exc}") from None

    def model_inputs(self, encoded: EncodedCase, ids: torch.Tensor, images: torch.Tensor) -> dict:
        """Every input the processor returns for the noisy ``images``, with ``input_ids`` replaced by the noisy ``ids``."""
        inputs = self._process(encoded.context, self._rgb(images))
        expected = encoded.ids.unsqueeze(0).expand(ids.shape[0], -1)
        proc_ids = inputs["input_ids"].to(self.device)
        if proc_ids.shape != expected.shape or not torch.equal(proc_ids, expected):
            raise ModelError("the processor laid out the noisy image's tokens differently from the clean image's; "
                             "certkit cannot apply text noise to a layout that changes with the pixels")
        out = {}
        for key, value in inputs.items():
            if key in _NOT_MODEL_INPUTS:
                continue
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            out[key] = value
        out["input_ids"] = ids
        out["attention_mask"] = torch.ones_like(ids)
        return out

    # ------------------------------------------------------------------ running

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int = 0, *, encoded: EncodedCase) -> list[str]:
        inputs = self.model_inputs(encoded, ids, images)
        if self.labels is not None:
            logits = self.model(**inputs).logits[:, -1, :].float()
            scores = logits[:, self._label_token_ids]
            if bool(torch.isnan(scores).any()):
                raise ModelError("the model returned NaN logits for the label tokens of a noisy sample; certkit will not guess its label")
            return [self.labels[i] for i in scores.argmax(dim=1).tolist()]
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "pad_token_id": self.tokenizer.pad_token_id}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
            torch.manual_seed(seed)
        out = self.model.generate(**inputs, **kwargs)
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


#: The name this adapter had while it only generated; it is the same class.
VisionLanguageGenerator = VisionLanguageModel
