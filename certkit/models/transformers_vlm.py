"""A transformers vision-language generator (LLaVA family and other ``AutoModelForImageTextToText`` models).

The prompt is rendered through the processor's chat template, tokenized once, and the positions of the
user's prompt located from the tokenizer's character offsets; text noise touches only those ids. Noisy
images are resized, centre-cropped and normalised in torch on the model's device with the image
processor's own settings, so the smoothing noise never leaves the GPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .base import EncodedCase, ModelError, resolve_device

__all__ = ["VisionLanguageGenerator"]

_SENTINEL = "\u2063CERTKIT_PROMPT\u2063"


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


class VisionLanguageGenerator:
    """Adapter around a loaded transformers VLM and its processor.

    Generation settings (``max_new_tokens``, greedy or sampled with ``temperature``/``top_p``) are part
    of the model's fingerprint. Sampled generation is seeded per batch so results are reproducible.
    """

    output_kind = "text"

    def __init__(
        self,
        model,
        processor,
        *,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        system_prompt: str | None = None,
        batch_size: int = 16,
        weights_fingerprint: str | None = None,
    ):
        if getattr(processor, "chat_template", None) is None:
            raise ModelError("the processor has no chat_template; set processor.chat_template (a Jinja string) before certifying")
        if isinstance(max_new_tokens, bool) or int(max_new_tokens) < 1:
            raise ModelError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ModelError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.system_prompt = system_prompt
        self.batch_size = int(batch_size)
        self.image_token_id = getattr(model.config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(model.config, "image_token_index", None)
        tok = self.tokenizer
        specials = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}).keys())
        if self.image_token_id is not None:
            specials.add(int(self.image_token_id))
        self.alphabet = torch.tensor(sorted(i for i in range(len(tok)) if i not in specials), dtype=torch.long, device=self.device)
        self.mask_id = next((i for i in (tok.mask_token_id, tok.pad_token_id, tok.unk_token_id) if i is not None), None)
        self.max_context = self._max_context()
        settings = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "system_prompt": system_prompt,
            "dtype": str(self.dtype),
            "chat_template": processor.chat_template,
        }
        weights = weights_fingerprint
        if weights is None:
            from .base import fingerprint_module

            weights = fingerprint_module(model)
        self.weights_fingerprint = weights
        self.fingerprint = hashlib.sha256((weights + json.dumps(settings, sort_keys=True)).encode()).hexdigest()
        self.name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        self._preprocess_settings()

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
    ) -> "VisionLanguageGenerator":
        """Load model and processor from a local directory with the Auto classes.

        ``dtype``: "auto" (the checkpoint's), or a torch dtype / name ("bfloat16"). ``device_map`` goes to
        accelerate (e.g. "auto" to shard a large model); otherwise the model moves to ``device`` (default:
        the first GPU if any, else CPU). ``trust_remote_code`` stays False unless you set it.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

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
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load a vision-language model from {str(path)!r}: {exc}") from None
        if device_map is None:
            model = model.to(resolve_device(device))
        return cls(model, processor, weights_fingerprint=fingerprint, **settings)

    # ------------------------------------------------------------------ encoding

    def _max_context(self) -> int | None:
        cfg = getattr(self.model.config, "text_config", self.model.config)
        return getattr(cfg, "max_position_embeddings", None)

    def _messages(self, text: str) -> list[dict]:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
        return messages

    def encode(self, case) -> EncodedCase:
        templated = self.processor.apply_chat_template(self._messages(_SENTINEL), add_generation_prompt=True, tokenize=False)
        if templated.count(_SENTINEL) != 1:
            raise ModelError("the chat template does not place the user's text exactly once; certkit cannot locate the prompt")
        prefix, suffix = templated.split(_SENTINEL)
        full = prefix + case.prompt + suffix
        start, end = len(prefix), len(prefix) + len(case.prompt)
        image = torch.tensor(case.image, dtype=torch.float32)
        rgb = image.expand(3, *image.shape[1:]) if image.shape[0] == 1 else image
        proc = self.processor(
            text=[full], images=[rgb.permute(1, 2, 0).numpy()], return_tensors="pt", do_rescale=False
        )
        ids = proc["input_ids"][0]
        plain = self.tokenizer(full, return_offsets_mapping=True)
        editable = self._align(ids.tolist(), plain["input_ids"], plain["offset_mapping"], start, end, case.id)
        if not editable.any():
            raise ModelError(f"case {case.id!r}: no token of the prompt could be located in the templated input")
        if self.max_context is not None and ids.numel() + self.max_new_tokens > self.max_context:
            raise ModelError(
                f"case {case.id!r}: prompt is too long: {ids.numel()} input tokens + {self.max_new_tokens} new tokens exceed "
                f"the model's context of {self.max_context}; shorten the prompt or lower max_new_tokens"
            )
        return EncodedCase(ids.to(self.device), editable.to(self.device), image.to(self.device))

    def _align(self, proc_ids, tok_ids, offsets, start, end, case_id) -> torch.Tensor:
        """Map the tokenizer's offsets onto the processor's ids (which expand each image token)."""
        editable = np.zeros(len(proc_ids), dtype=bool)
        j = 0
        for tid, (a, b) in zip(tok_ids, offsets):
            if j >= len(proc_ids):
                break
            if self.image_token_id is not None and tid == self.image_token_id:
                while j < len(proc_ids) and proc_ids[j] == self.image_token_id:
                    j += 1
                continue
            if proc_ids[j] != tid:
                raise ModelError(f"case {case_id!r}: the processor's token ids do not match the tokenizer's; cannot locate the prompt")
            editable[j] = b > a and a >= start and b <= end
            j += 1
        return torch.from_numpy(editable)

    # ------------------------------------------------------------------ images

    def _preprocess_settings(self) -> None:
        ip = self.processor.image_processor

        def get(name, default=None):
            return getattr(ip, name, default)

        self._do_resize = bool(get("do_resize", True))
        self._size = get("size") or {}
        self._do_crop = bool(get("do_center_crop", False))
        self._crop = get("crop_size") or {}
        self._do_norm = bool(get("do_normalize", True))
        mean, std = get("image_mean", [0.5, 0.5, 0.5]), get("image_std", [0.5, 0.5, 0.5])
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float images in [0, 1] (noisy) -> the model's pixel_values."""
        import torch.nn.functional as F

        x = images
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self._do_resize:
            size = dict(self._size)
            if "shortest_edge" in size:
                h, w = x.shape[-2:]
                s = size["shortest_edge"] / min(h, w)
                target = (max(1, round(h * s)), max(1, round(w * s)))
            else:
                target = (size.get("height", x.shape[-2]), size.get("width", x.shape[-1]))
            if tuple(x.shape[-2:]) != tuple(target):
                x = F.interpolate(x, size=target, mode="bicubic", align_corners=False, antialias=True)
        if self._do_crop and self._crop:
            ch, cw = self._crop.get("height", x.shape[-2]), self._crop.get("width", x.shape[-1])
            top, left = max(0, (x.shape[-2] - ch) // 2), max(0, (x.shape[-1] - cw) // 2)
            x = x[..., top : top + ch, left : left + cw]
        if self._do_norm:
            x = (x - self._mean) / self._std
        return x.to(self.dtype)

    # ------------------------------------------------------------------ running

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int = 0) -> list[str]:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "pad_token_id": self.tokenizer.pad_token_id}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
            torch.manual_seed(seed)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=self.pixel_values(images),
            **kwargs,
        )
        return self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
