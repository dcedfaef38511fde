"""Out of accelerator memory: the batch size steps down and the same samples run again.

A model call takes one batch of a sample stream, on the stream's grid (:func:`certkit.streams.batch_end`). When the
device runs out of memory (``torch.OutOfMemoryError``) the batch size steps down to about half (:func:`smaller_batch`),
whose grid splits the failing batch into whole batches, and the same samples run again; the smaller size is kept for
that input shape for the rest of the ``Smoothed``, and on CUDA the measured peak memory per sample keeps later batches
within the free memory. The batch used is in ``timings["batch_size"]`` (and the retries in
``timings["out_of_memory_retries"]``). A deterministic model's counts do not depend on any of this. A sampling model
(temperature > 0) draws from its batch's seed, so its outputs depend on where batches start: a run that stepped down
to batch size ``b`` gives the outputs a run at ``b`` from the start gives, from the failing batch on (earlier batches
ran, and are cached, at the larger size); a stream extended from a cache whose end falls inside a batch starts that
batch there.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import torch

from .models.base import ModelError
from .streams import CHUNK, Draw, batch_end, grid_batch

__all__ = ["smaller_batch", "input_shape", "Backoff"]


def smaller_batch(size: int) -> int | None:
    """The grid batch size an out-of-memory error at ``size`` steps down to (None at 1): half of it where that is on the
    grid, else its largest divisor below half that is (96 -> 32). Its grid refines the failing one, so the failing
    batch splits into whole batches of the smaller size: exactly those a run at that size from the start has there."""
    return next((d for d in range(size // 2, 0, -1) if size % d == 0 and (d < CHUNK or d % CHUNK == 0)), None)


def input_shape(enc) -> tuple:
    """What a batch's memory depends on besides its size: the shapes of one sample's inputs."""
    return tuple(enc.ids.shape), tuple(enc.image.shape)


def _cuda(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def _free_memory(device: torch.device) -> int | None:
    """Bytes a batch may take on a CUDA device: free on the device, plus what torch holds cached but unused (else None)."""
    if not _cuda(device):
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _reset_peak(device: torch.device) -> int | None:
    """On CUDA: start measuring a batch's peak memory; the bytes in use now (else None)."""
    if not _cuda(device):
        return None
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _after_out_of_memory(device: torch.device, base: int | None, batch: int, message: str) -> str:
    """Return torch's cached blocks to the device after an out-of-memory error; what the batch needed, in words."""
    if base is None:
        return message
    peak = torch.cuda.max_memory_allocated(device) - base
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    asked = re.search(r"Tried to allocate ([0-9.]+) ([KMGT]?i?B)", message)
    more = f" plus the {asked.group(1)} {asked.group(2)} it asked for" if asked else ""
    return (f"a batch of {batch} held {_gib(peak)}{more} on {device}, which has {_gib(free)} free of {_gib(total)} "
            f"({message})")


class Backoff:
    """The batch sizes of one ``Smoothed``'s model: the adapter's ``batch_size`` (``model``), bounded by
    ``max_batch_bytes`` of noisy images, and what out-of-memory errors and measured footprints taught, per input shape
    (remembered in ``caps`` and ``footprints`` for the rest of the ``Smoothed``)."""

    def __init__(self, model, max_batch_bytes: int):
        self.model, self.max_batch_bytes = model, max_batch_bytes
        self.caps: dict[tuple, int] = {}  # input shape -> batch size learned from out-of-memory or the footprint
        self.footprints: dict[tuple, float] = {}  # input shape -> peak bytes per sample measured on CUDA

    def size(self, enc) -> int:
        """Samples per model call, on the stream's batch grid (:func:`~certkit.streams.grid_batch`): the adapter's
        ``batch_size``, fewer when a batch of noisy images at the case's resolution would exceed ``max_batch_bytes``
        (counting the noise, the noisy copy and the adapter's own), fewer again once the device ran out of memory on
        this input shape or its measured footprint no longer fits the free memory (both remembered)."""
        per_sample = 3 * enc.image.element_size() * enc.image.numel()
        shape = input_shape(enc)
        size = self.caps.get(shape) or grid_batch(max(1, min(self.model.batch_size, self.max_batch_bytes // max(1, per_sample))))
        footprint = self.footprints.get(shape)
        if footprint:
            free = _free_memory(enc.image.device)
            while free is not None and size > 1 and size * footprint > free:
                size = smaller_batch(size)
            self.caps[shape] = size
        return size

    def run(self, draw: Draw, ids: list, images: list, start: int, run_batch: Callable[..., list[str]],
            label_index: dict[str, int]) -> np.ndarray:
        """Label indices (``label_index``) of the samples ``start ..``, run by ``run_batch(draw, ids, images, start)`` in
        batches on the grid. When the device runs out of memory, the batch size steps down (:func:`smaller_batch`,
        remembered for the case's input shape) and the same samples run again in the smaller size's batches: the
        batches, seeds and so labels a run at that size gives from the start. :class:`~certkit.models.base.ModelError`
        where a single sample does not fit."""
        labels: list[str] = []
        at = 0
        while at < len(ids):
            size = self.size(draw.enc)
            end = batch_end(start + at, size, start + len(ids)) - start
            out, failure = self._attempt(draw, ids[at:end], images[at:end], start + at, run_batch, whole=end - at == size)
            if failure is None:
                labels.extend(out)
                at = end
                continue
            smaller = smaller_batch(size)
            while smaller is not None and smaller >= end - at:  # a batch cut short by the drawn range: smaller than it
                smaller = smaller_batch(smaller)
            if smaller is None:
                raise ModelError(f"case {draw.case.id!r}: {type(self.model).__name__} runs out of memory on a single sample: {failure}. "
                                 "Free the device (other processes, other models), or use a smaller model, dtype or image")
            self.caps[input_shape(draw.enc)] = smaller
            draw.timing["out_of_memory_retries"] = draw.timing.get("out_of_memory_retries", 0) + 1
        return np.array([label_index[label] for label in labels], dtype=np.uint8)

    def _attempt(self, draw: Draw, ids: list, images: list, start: int, run_batch, whole: bool) -> tuple[list[str] | None, str | None]:
        """One batch: (labels, None), or (None, what the memory needed) when the device ran out of it. On CUDA a ``whole``
        batch (not one cut short by the drawn range, whose fixed costs would weigh more per sample) also measures its
        peak memory per sample: the footprint that keeps later batches of this input shape within the free memory."""
        device = draw.enc.image.device
        base = _reset_peak(device)
        try:
            labels = run_batch(draw, ids, images, start)
        except torch.OutOfMemoryError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            if base is not None and whole:
                self.footprints[input_shape(draw.enc)] = max(1.0, (torch.cuda.max_memory_allocated(device) - base) / len(ids))
            return labels, None
        # past the except block the error's frames, and the tensors they held, are gone: return them to the device
        return None, _after_out_of_memory(device, base, len(ids), failure)
