"""The adapter contract between certkit's smoothing engine and a model.

An adapter turns a :class:`~certkit.cases.Case` into token ids with a mask of the positions that
belong to the user's prompt (the only ones text noise may touch), and runs batches of (noisy ids,
noisy images) through the model, returning one output per sample: generated text for generators,
a class label for classifiers. The oracle then reads those outputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..errors import CertkitError

__all__ = ["EncodedCase", "ModelAdapter", "ModelError", "fingerprint_module"]


class ModelError(CertkitError):
    """A model, or a case as the model sees it, that cannot be certified; the message says how to fix it."""


@dataclass(frozen=True)
class EncodedCase:
    """A case as the model sees it: ``ids`` (L,) on the model's device, ``editable`` (L,) bool marking the
    user-prompt positions, ``image`` (C, H, W) float32 in [0, 1] on the device, and ``context``: whatever else
    the adapter needs to run noisy samples of this case (e.g. the templated text its processor reads)."""

    ids: torch.Tensor
    editable: torch.Tensor
    image: torch.Tensor
    context: object = None


@runtime_checkable
class ModelAdapter(Protocol):
    #: stable description of the weights and settings; changes whenever outputs could change
    fingerprint: str
    #: "text" (generated answers) or "label" (class labels)
    output_kind: str
    device: torch.device
    #: sorted 1-D tensor of the token ids UniformReplace may draw (special tokens excluded)
    alphabet: torch.Tensor
    #: token id the Mask kernel writes, or None if the model has none
    mask_id: int | None
    batch_size: int

    def encode(self, case) -> EncodedCase: ...

    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int) -> list[str]:
        """One output per sample. An adapter whose ``run`` takes a keyword ``encoded`` receives the case's
        :class:`EncodedCase` too."""


def fingerprint_module(module: torch.nn.Module, extra: str = "") -> str:
    """SHA-256 over every parameter and buffer (names, shapes, dtypes, bytes) plus ``extra``."""
    h = hashlib.sha256(extra.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
