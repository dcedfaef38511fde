"""Any torch module that maps (token ids, images) to class logits."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .base import (
    EncodedCase,
    ModelError,
    callable_fingerprint,
    code_fingerprint,
    fingerprint_module,
    module_device,
    module_dtype,
    resolve_device,
    runtime,
)

__all__ = ["TorchClassifier"]


class TorchClassifier:
    """Adapter for ``module(ids: LongTensor (B, L), images: FloatTensor (B, C, H, W)) -> logits (B, K)``.

    ``tokenize`` maps the prompt to token ids; every prompt token is editable. ``labels[k]`` names class
    ``k``. ``alphabet`` lists the token ids text noise may draw (default: ``range(vocab_size)`` minus
    ``special_ids``); ``mask_id`` is the id the Mask kernel writes. ``device``: where the module runs (default:
    where its weights are if that is a GPU, else the first GPU if any, else CPU); ids and images reach it there,
    images in the dtype of its floating-point weights. The fingerprint covers the weights, the module's code and
    flags, the labels, ``tokenize`` (its code and state), the alphabet, ``mask_id`` and ``max_length``.
    :class:`ModelError` for a non-module, fewer than two distinct labels, neither ``vocab_size`` nor ``alphabet``,
    an alphabet of fewer than two ids, or a ``batch_size`` below 1.
    """

    output_kind = "label"

    def __init__(
        self,
        module: torch.nn.Module,
        labels: Sequence[str],
        tokenize: Callable[[str], Sequence[int]],
        *,
        vocab_size: int | None = None,
        alphabet: Sequence[int] | None = None,
        special_ids: Sequence[int] = (),
        mask_id: int | None = None,
        device=None,
        batch_size: int = 256,
        name: str | None = None,
        max_length: int | None = None,
    ):
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        labels = tuple(str(label) for label in labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ModelError(f"labels must be at least two distinct class names, got {labels!r}")
        if alphabet is None:
            if vocab_size is None:
                raise ModelError("give vocab_size (token ids 0..vocab_size-1) or an explicit alphabet of token ids")
            specials = set(int(i) for i in special_ids)
            alphabet = [i for i in range(int(vocab_size)) if i not in specials]
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ModelError(f"batch_size must be a positive integer, got {batch_size!r}")
        own = module_device(module)
        self.device = resolve_device(device if device is not None or own is None or own.type == "cpu" else own)
        self.module = module.to(self.device).eval()
        self.dtype = module_dtype(module)
        self.labels = labels
        self.tokenize = tokenize
        self.alphabet = torch.as_tensor(sorted(set(int(i) for i in alphabet)), dtype=torch.long, device=self.device)
        if self.alphabet.numel() < 2:
            raise ModelError("the replacement alphabet needs at least two token ids")
        self.mask_id = mask_id
        self.batch_size = int(batch_size)
        self.max_length = max_length
        self.name = name or type(module).__name__
        # weights, and everything else that decides the labels: the module's code and flags, the tokenizer,
        # the alphabet, the mask token and the context limit
        extra = repr((labels, code_fingerprint(module), callable_fingerprint(tokenize), self.alphabet.tolist(), mask_id, max_length))
        self.fingerprint = fingerprint_module(module, extra=extra)

    def encode(self, case) -> EncodedCase:
        """``tokenize(prompt)`` as a LongTensor, every position editable, and the image, on :attr:`device`;
        :class:`ModelError` for a prompt of no tokens or more than ``max_length``."""
        ids = [int(i) for i in self.tokenize(case.prompt)]
        if not ids:
            raise ModelError(f"case {case.id!r}: the prompt tokenizes to no tokens")
        if self.max_length is not None and len(ids) > self.max_length:
            raise ModelError(f"case {case.id!r}: prompt has {len(ids)} tokens, more than the model's context of {self.max_length}")
        ids_t = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        image = torch.tensor(case.image, dtype=torch.float32, device=self.device)
        return EncodedCase(ids_t, torch.ones_like(ids_t, dtype=torch.bool), image)

    @property
    def runtime(self) -> dict:
        """The device, software and kernel flags the labels are computed with (see :func:`certkit.models.base.runtime`)."""
        return runtime(self.device)

    @torch.inference_mode()
    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int = 0, *, encoded: EncodedCase | None = None) -> list[str]:
        """The label of each sample's largest logit (the first on a tie), in order; ``seed`` and ``encoded`` are not
        used. :class:`ModelError` for logits that are not (batch, len(labels)) or hold NaN."""
        logits = self.module(ids.to(self.device), images.to(self.device, self.dtype))
        if logits.ndim != 2 or logits.shape[1] != len(self.labels):
            raise ModelError(f"the module returned logits of shape {tuple(logits.shape)}; expected (batch, {len(self.labels)})")
        if ids.shape[0] != logits.shape[0]:
            raise ModelError(f"the module returned logits for {logits.shape[0]} samples from a batch of {ids.shape[0]}; "
                             "it must return one row per sample")
        nan_rows = torch.isnan(logits).any(dim=1) if logits.is_floating_point() else None
        if nan_rows is not None and bool(nan_rows.any()):
            raise ModelError(
                f"the module returned NaN logits for {int(nan_rows.sum())} of {ids.shape[0]} noisy samples; certkit will not guess "
                "their class. Check the model's numerics under noise (fp16 overflow, a division by a pixel statistic)"
            )
        return [self.labels[i] for i in logits.argmax(dim=1).tolist()]
