"""The adapter contract between certkit's smoothing engine and a model.

An adapter turns a :class:`~certkit.cases.Case` into token ids with a mask of the positions that
belong to the user's prompt (the only ones text noise may touch), and runs batches of (noisy ids,
noisy images) through the model, returning one output per sample: generated text for generators,
a class label for classifiers. The oracle then reads those outputs.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..errors import CertkitError

__all__ = ["EncodedCase", "ModelAdapter", "ModelError", "fingerprint_module", "code_fingerprint", "callable_fingerprint",
           "takes_encoded"]


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


def takes_encoded(adapter) -> bool:
    """Whether ``adapter.run`` takes the keyword ``encoded`` (adapters written before it existed do not)."""
    try:
        return "encoded" in inspect.signature(adapter.run).parameters
    except (TypeError, ValueError):
        return False


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


def _source(obj) -> bytes:
    try:
        return inspect.getsource(obj).encode()
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return (code.co_code + repr(code.co_consts).encode()) if code is not None else _stable_repr(obj)


def code_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over the source of every module class the model is built from, and each module's non-tensor
    settings (a changed ``forward`` or behaviour flag is a different model, with the same weights)."""
    h = hashlib.sha256()
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
        h.update(_source(cls))
    for name, m in module.named_modules():
        flags = {k: v for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, (bool, int, float, str, type(None), tuple))}
        h.update(f"{name}={sorted(flags.items())!r}".encode())
    return h.hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _stable_repr(value) -> bytes:
    """``repr`` without memory addresses, so the same object state gives the same bytes in every process."""
    return _ADDRESS.sub("", repr(value)).encode()


def callable_fingerprint(fn) -> str:
    """SHA-256 over a function's code, the values it closes over and, for a bound method or callable object,
    its class's source and its attributes: what decides a tokenize function's output."""
    h = hashlib.sha256()
    owner = getattr(fn, "__self__", None)
    if owner is None and not inspect.isfunction(fn) and not inspect.ismethod(fn):
        owner = fn
    if owner is not fn:
        h.update(_source(getattr(fn, "__func__", fn)))
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            h.update(_stable_repr(cell.cell_contents))
        except ValueError:  # an empty cell
            pass
    if owner is not None:
        h.update(_source(type(owner)))
        h.update(_stable_repr(sorted(vars(owner).items(), key=lambda kv: kv[0])) if hasattr(owner, "__dict__") else b"")
    return h.hexdigest()
