"""The adapter contract between certkit's smoothing engine and a model.

An adapter turns a :class:`~certkit.cases.Case` into token ids with a mask of the positions that
belong to the user's prompt (the only ones text noise may touch), and runs batches of (noisy ids,
noisy images) through the model, returning one output per sample: generated text for generators,
a class label for classifiers. The oracle then reads those outputs.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import io
import json
import re
import textwrap
import tokenize
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..errors import CertkitError

__all__ = ["EncodedCase", "ModelAdapter", "ModelError", "UnspellableText", "fingerprint_module", "code_fingerprint",
           "callable_fingerprint", "config_fingerprint", "takes_encoded", "resolve_device", "module_device", "module_dtype", "to_device",
           "runtime", "quiet_progress_bars"]


class ModelError(CertkitError):
    """A model, or a case as the model sees it, that cannot be certified; the message says how to fix it."""


class UnspellableText(ModelError):
    """The case prompt holds text the model's tokenizer reads as its unknown token. ``text`` is that text and
    ``start``/``end`` its character span in the case prompt, so a caller that built the prompt from parts (a
    judge's template around a request and an answer) can name the part it is in."""

    def __init__(self, message: str, text: str, start: int, end: int):
        super().__init__(message)
        self.text, self.start, self.end = text, start, end


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
    """What :class:`certkit.Smoothed` needs from a model: the attributes below, :meth:`encode` and :meth:`run`.

    The engine relies on this: ``fingerprint`` covers everything that decides ``run``'s outputs (the count cache
    reuses labels under it), and ``run`` returns exactly one ``str`` per sample, in order (anything else is a
    :class:`ModelError`). :class:`~certkit.models.VisionLanguageModel`, :class:`~certkit.models.TorchClassifier`
    and :class:`~certkit.models.ServedVLM` implement it.
    """

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

    def encode(self, case) -> EncodedCase:
        """The case as the model reads it (once per case); :class:`ModelError` for a case the model cannot take."""

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
    """SHA-256 hex digest over every tensor of the module's state dict, parameters and persistent buffers (names,
    shapes, dtypes, bytes, in name order), plus ``extra``: the same weights give the same digest on any device."""
    h = hashlib.sha256(extra.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def resolve_device(device) -> torch.device:
    """``device``, or the current GPU if any, else the CPU. A bare "cuda" gets its index, so the device compares
    equal to the ``.device`` of the tensors placed on it."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def module_device(module: torch.nn.Module) -> torch.device | None:
    """Where a module reads its inputs: its input embeddings' device (the first shard of a model spread over
    devices), else its first parameter's or buffer's; None for a module that holds no tensor."""
    try:
        weight = getattr(module.get_input_embeddings(), "weight", None)
    except (AttributeError, NotImplementedError):  # not a transformers model, or one without token embeddings
        weight = None
    if isinstance(weight, torch.Tensor):
        return weight.device
    first = next(iter(module.parameters()), None)
    if first is None:
        first = next(iter(module.buffers()), None)
    return first.device if first is not None else None


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype a module computes in: its first floating-point parameter's (a quantised model's integer weights
    say nothing about it), float32 for a module without one."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def to_device(value, device: torch.device, dtype: torch.dtype):
    """A model input on ``device``: floating tensors in ``dtype``, the others (ids, sizes, grids, masks) keep
    theirs; lists and tuples of tensors likewise (processors return some inputs as lists)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, dtype) if value.is_floating_point() else value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device, dtype) for v in value)
    return value


def runtime(device: torch.device) -> dict:
    """How this process computes on ``device``: what decides whether the same seed gives the same labels twice.

    Recorded with the results, not in the fingerprint: labels computed on another device or with other kernels
    are draws of the same smoothed classifier as far as the maths goes (a non-deterministic kernel makes the base
    classifier randomised, which the certificate covers), but counts are reproducible bit for bit only on the
    same device, software and flags, with ``deterministic_algorithms`` on for CUDA."""
    record = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        record.update(
            gpu=torch.cuda.get_device_name(device),
            cuda=torch.version.cuda,
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
        )
    return record


@contextlib.contextmanager
def quiet_progress_bars():
    """While it is open, transformers and huggingface_hub draw no progress bars ("Loading weights", "Writing model
    shards", downloads): certkit's own loads stay out of the test output pytest captures. The switch is theirs
    (``transformers.utils.logging``) and process-wide; it is turned back on at exit where it was on before."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _source(obj) -> bytes:
    """What the code of a class or function is, for fingerprints: its source without comments, docstrings, blank lines
    and trailing spaces (:func:`code_text`), so an edited comment keeps the cache; its bytecode where there is no
    source."""
    try:
        return code_text(inspect.getsource(obj)).encode()
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return (code.co_code + repr(code.co_consts).encode()) if code is not None else _stable_repr(obj)


def code_text(source: str) -> str:
    """``source`` (dedented) without its comments, its docstrings (the string that opens a module, class or function
    body), blank lines and trailing spaces; every other character, indentation included, is kept, so two sources with
    the same ``code_text`` run the same code (a function that reads its own ``__doc__`` aside). Source that does not
    parse is returned dedented, as it is. The same text on every Python version: positions come from ``tokenize``
    and ``ast``, and no token is re-rendered."""
    source = textwrap.dedent(source)
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return source
    lines = source.splitlines()
    cut = [(t.start, t.end) for t in tokens if t.type == tokenize.COMMENT]  # (line, column in characters)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                # ast counts columns in UTF-8 bytes; tokenize and str slicing count characters
                start = (first.lineno, len(lines[first.lineno - 1].encode()[:first.col_offset].decode()))
                end = (first.end_lineno, len(lines[first.end_lineno - 1].encode()[:first.end_col_offset].decode()))
                cut.append((start, end))
    for (l0, c0), (l1, c1) in sorted(cut, reverse=True):  # from the end, so earlier positions stay valid
        head, tail = lines[l0 - 1][:c0], lines[l1 - 1][c1:]
        lines[l0 - 1:l1] = [head + tail] + [""] * (l1 - l0)
    return "\n".join(line.rstrip() for line in lines if line.strip())


#: attributes and config keys that say where a model was loaded from, not what it computes: a checkout in another
#: folder or on another node is the same model (same cache key, mergeable shards)
_WHERE_FROM = ("name_or_path", "_name_or_path")


def config_fingerprint(config) -> str:
    """A transformers config as JSON without the folder it was loaded from (in it and every sub-config)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _WHERE_FROM}
        return value

    return json.dumps(strip(json.loads(config.to_json_string(use_diff=False))), sort_keys=True)


def code_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over the source of every module class the model is built from, and each module's non-tensor
    settings (a changed ``forward`` or behaviour flag is a different model, with the same weights)."""
    h = hashlib.sha256()
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
        h.update(_source(cls))
    for name, m in module.named_modules():
        flags = {k: v for k, v in vars(m).items() if not k.startswith("_") and k not in _WHERE_FROM
                 and isinstance(v, (bool, int, float, str, type(None), tuple))}
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
