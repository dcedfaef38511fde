"""Sample streams: one per case, drawn in chunks, kept in memory and in the count cache, read by every requirement.

One stream per case: all requirements on the same (model, oracle, case, kernels, seed) read one sample stream,
seeded by (run seed, case id); a requirement needing n samples reads its first n, so a case costs its most
demanding requirement, not the sum. The stream is kept in memory for the requirements that follow and in the
count cache across processes and runs, which extend it rather than redraw it. Each requirement's test is valid
on its own (its false-certification rate is at most its alpha); requirements on one case share samples, so their
errors are not independent of one another (a union bound over them still holds).

Reproducibility: the stream is drawn in chunks of ``CHUNK`` samples, each with its own generators, so counts do
not depend on the order of requirements, on the worker that runs them, or (for deterministic models) on the
batch size. A model call takes one batch of the stream, on a grid the batch size alone fixes (:func:`batch_end`),
and the generation seed ``model.run`` gets is derived from the batch's first sample index (:func:`generation_seed`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from .cache import CountCache, stream_key
from .cases import Case
from .sampling import derive_seed, noisy_images, noisy_token_ids

__all__ = ["CHUNK", "STREAMS_IN_MEMORY", "generation_seed", "grid_batch", "batch_end", "Draw", "Streams"]

#: samples per chunk: each chunk of a stream draws from its own generators, and streams are cached in whole chunks
CHUNK = 32
#: streams one Smoothed keeps in memory for the requirements that follow (one byte per sample drawn; least recent dropped)
STREAMS_IN_MEMORY = 1024


def generation_seed(stream_seed: int, start: int) -> int:
    """The seed ``model.run`` gets for the batch whose first sample is sample ``start`` of the stream: a function of
    the stream's seed and ``start`` alone (:func:`~certkit.sampling.derive_seed`), whatever batch size or process."""
    return derive_seed(stream_seed, "gen", start // CHUNK, start % CHUNK)


def grid_batch(size: int) -> int:
    """The batch size ``size`` runs at on the stream's grid: whole chunks from ``CHUNK`` up, else ``size`` itself."""
    return size // CHUNK * CHUNK if size >= CHUNK else size


def batch_end(start: int, size: int, stop: int) -> int:
    """The end of the batch that holds sample ``start`` at grid batch size ``size``, cut at ``stop``.

    The grid is fixed by the size alone: multiples of ``size`` from ``CHUNK`` up; below it, multiples of ``size``
    within each chunk, and every chunk boundary. So a sample lands in the same batch, with the same generation seed,
    whatever the range drawn around it, except where a range starts or stops inside a batch (a cached prefix, a cap)."""
    if size >= CHUNK:
        end = (start // size + 1) * size
    else:
        chunk = start // CHUNK * CHUNK
        end = min(chunk + CHUNK, chunk + ((start - chunk) // size + 1) * size)
    return min(end, stop)


class Draw:
    """One requirement's reading of a case's sample stream: the labels it found (this process or the cache), the
    batches it has drawn since, and its timings."""

    def __init__(self, case: Case, enc, seed: int, key: str, have: np.ndarray):
        self.case, self.enc, self.seed, self.key = case, enc, seed, key
        self.cached = self.size = int(have.size)
        self.timing: dict = {}
        self._parts = [have]

    def add(self, labels: np.ndarray) -> None:
        """Append the labels of the next samples of the stream."""
        self._parts.append(labels)
        self.size += int(labels.size)

    def labels(self) -> np.ndarray:
        """Every label of the stream read so far, in stream order."""
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]


class Streams:
    """The sample streams of one ``Smoothed`` (``model``, ``oracle``, kernels ``image`` and ``text``, run ``seed``): their
    keys, their noisy inputs, and their labels, kept in memory (:data:`STREAMS_IN_MEMORY`, least recent dropped) and
    in ``cache`` (a :class:`~certkit.cache.CountCache` or None) in whole chunks."""

    def __init__(self, model, oracle, image, text, seed: int, cache: CountCache | None):
        self.model, self.oracle, self.image, self.text, self.seed, self.cache = model, oracle, image, text, seed, cache
        self.memory: OrderedDict[str, np.ndarray] = OrderedDict()
        alphabet_bytes = model.alphabet.detach().cpu().numpy().astype(np.int64).tobytes()
        self._alphabet_hash = hashlib.sha256(alphabet_bytes).hexdigest()[:16]

    def stream(self, case: Case, enc) -> tuple[int, str]:
        """The case's one sample stream: its seed and cache key. Every requirement on the case (certify at any
        radius, edits, outcome or threshold, and the frontier) reads the same stream's first n labels. The key
        covers everything that decides its labels: the model's and the oracle's fingerprints, the case, the case
        as the model encodes it (ids and editable positions), the kernels, the alphabet, the mask token and the seed."""
        seed = derive_seed(self.seed, case.id, "stream")
        encoded = hashlib.sha256(enc.ids.detach().cpu().numpy().astype(np.int64).tobytes()
                                 + enc.editable.detach().cpu().numpy().astype(np.bool_).tobytes()).hexdigest()
        key = stream_key(
            model=self.model.fingerprint,
            oracle=self.oracle.fingerprint,
            case=case.content_hash,
            encoded=encoded,
            image=self.image.params() if self.image else None,
            text=self.text.params() if self.text else None,
            alphabet=self._alphabet_hash,
            mask_id=getattr(self.model, "mask_id", None),
            seed=seed,
            chunk=CHUNK,
            sampler=4,  # 4: batches on a grid fixed by the batch size (generation seeds of sampling models)
            noise_device=enc.ids.device.type,  # CPU and CUDA generators draw different noise from one seed
        )
        return seed, key

    def open(self, case: Case, enc) -> Draw:
        """The case's stream as a requirement starts: what this process or the cache already holds."""
        seed, key = self.stream(case, enc)
        return Draw(case, enc, seed, key, self.cached(key))

    def noisy_samples(self, enc, stream_seed: int, first_chunk: int, last_chunk: int):
        """Noisy (ids, image) pairs of chunks ``first_chunk .. last_chunk - 1``, one at a time, in stream order.

        Chunk ``c`` draws its text noise from one generator and its images, one by one, from another, both
        seeded by (stream, c): a sample does not depend on how samples are batched, and no more than one
        batch of noisy images is ever held in memory."""
        device = enc.ids.device
        for c in range(first_chunk, last_chunk):
            text_gen = torch.Generator(device=device)
            text_gen.manual_seed(derive_seed(stream_seed, "text", c))
            image_gen = torch.Generator(device=device)
            image_gen.manual_seed(derive_seed(stream_seed, "image", c))
            ids = noisy_token_ids(enc.ids, enc.editable, self.text, CHUNK, text_gen, self.model.alphabet,
                                  getattr(self.model, "mask_id", None))
            for i in range(CHUNK):
                yield ids[i], noisy_images(enc.image, self.image, 1, image_gen)[0]

    def keep(self, draw: Draw) -> None:
        """Keep the stream's whole chunks in memory, and write them to the cache, if it grew: at the end of every
        requirement, also one ended by an error, an interrupt (Ctrl-C, or SIGTERM in a certkit run) or a timeout."""
        labels = draw.labels()
        labels = labels[: labels.size // CHUNK * CHUNK]
        if labels.size > draw.cached:
            self.memory[draw.key] = labels
            self.memory.move_to_end(draw.key)
            while len(self.memory) > STREAMS_IN_MEMORY:
                self.memory.popitem(last=False)
            if self.cache is not None:
                self.cache.put(draw.key, self.oracle.all_labels, labels)

    def cached(self, key: str) -> np.ndarray:
        """The stream's labels known so far: in memory (this process), else in the cache, whole chunks only."""
        labels = self.memory.get(key)
        if labels is None and self.cache is not None:
            labels = self.cache.get(key, self.oracle.all_labels)
        if labels is None:
            return np.zeros(0, dtype=np.uint8)
        return labels[: (labels.size // CHUNK) * CHUNK]
