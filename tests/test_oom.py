"""Out of accelerator memory: the batch steps down, the same samples run again, and the certificate is the one a run at
the smaller batch gives. No GPU here: the models raise ``torch.OutOfMemoryError`` above a batch size, as CUDA does."""

import numpy as np
import pytest
import torch

from certkit import Case, Smoothed, backoff
from certkit.backoff import smaller_batch
from certkit.models import ModelError, TorchClassifier
from certkit.noise import Gaussian, UniformReplace
from certkit.oracles import LabelOracle
from certkit.streams import CHUNK, batch_end, grid_batch
from certkit.testing import BrightnessClassifier

VOCAB = 30
LABELS = ["dark", "bright"]


def tokenize(text):
    return [2 + len(w) % (VOCAB - 2) for w in text.split()]


class Sampling(TorchClassifier):
    """A sampling model in miniature: each output mixes the image with a draw from a generator seeded by the batch's seed,
    one draw per position in the batch, as a sampling VLM's generate does. Past ``fits`` samples per call it raises
    torch's out-of-memory error; ``sizes`` records every call it answered, ``failures`` every one it refused."""

    def __init__(self, batch_size, fits=None):
        super().__init__(BrightnessClassifier(), LABELS, tokenize, vocab_size=VOCAB, special_ids=[0, 1], mask_id=0,
                         batch_size=batch_size, name="sampling")
        self.fits, self.sizes, self.failures = fits, [], 0

    def run(self, ids, images, seed=0, *, encoded=None):
        if self.fits is not None and ids.shape[0] > self.fits:
            self.failures += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {ids.shape[0] * 0.5:.2f} GiB. GPU 0 has a total "
                                         "capacity of 139.80 GiB of which 1.06 GiB is free.")
        self.sizes.append(ids.shape[0])
        draws = torch.rand(ids.shape[0], generator=torch.Generator().manual_seed(seed))
        score = images.mean(dim=(1, 2, 3)) - 0.5 + 0.2 * (draws - 0.5)
        return [LABELS[int(s > 0)] for s in score]


def _smoothed(model):
    return Smoothed(model, LabelOracle(LABELS), image=Gaussian(0.5), text=UniformReplace(0.2, VOCAB - 2), seed=4)


def _case(value, cid):
    return Case(cid, "hand the knife to the person", np.full((3, 8, 8), value, dtype=np.float32))


def _results(smoothed):
    certs = [smoothed.frontier(_case(0.56, "b"), max_edits=2, outcome="bright", n=700),
             smoothed.certify(_case(0.53, "a"), radius=0.05, outcome="bright", n_max=3000)]
    streams = [labels.copy() for labels in smoothed._streams.memory.values()]
    return certs, streams


@pytest.mark.parametrize("configured, fits, steps_to", [(128, 32, 32), (96, 40, 32), (256, 200, 128), (24, 10, 6)])
def test_out_of_memory_steps_down_and_gives_what_that_batch_gives(configured, fits, steps_to):
    """Same per-sample outputs, so the same certificates, as a run at the smaller batch from the start, even for a model
    whose outputs depend on the generation seed of its batch. The batch used is recorded; the size the device could not
    take is not tried again for every batch."""
    small = Sampling(steps_to)
    want_certs, want_streams = _results(_smoothed(small))
    model = Sampling(configured, fits=fits)
    certs, streams = _results(_smoothed(model))
    for got, want in zip(certs, want_certs):
        assert (got.status, got.n, got.successes, got.label_counts, got.p_a_lower, got.frontier) == (
            want.status, want.n, want.successes, want.label_counts, want.p_a_lower, want.frontier)
        assert got.timings["batch_size"] == steps_to
    assert all(np.array_equal(a, b) for a, b in zip(streams, want_streams)) and len(streams) == 2
    assert model.sizes == small.sizes  # the very calls a run at the smaller batch makes
    assert model.failures == certs[0].timings["out_of_memory_retries"] >= 1
    assert "out_of_memory_retries" not in certs[1].timings  # learned once, for the whole Smoothed


def test_counts_of_a_deterministic_model_do_not_depend_on_memory():
    def counts(model):
        s = Smoothed(model, LabelOracle(LABELS), image=Gaussian(0.5), seed=1)
        return s.frontier(_case(0.52, "c"), outcome="bright", n=500).label_counts

    class Tight(TorchClassifier):
        def run(self, ids, images, seed=0, *, encoded=None):
            if ids.shape[0] > 3:
                raise torch.OutOfMemoryError("CUDA out of memory.")
            return super().run(ids, images, seed, encoded=encoded)

    plain = TorchClassifier(BrightnessClassifier(), LABELS, tokenize, vocab_size=VOCAB, special_ids=[0, 1], batch_size=512)
    tight = Tight(BrightnessClassifier(), LABELS, tokenize, vocab_size=VOCAB, special_ids=[0, 1], batch_size=512)
    assert counts(tight) == counts(plain)


def test_a_model_that_cannot_run_one_sample_says_what_it_needed():
    model = Sampling(64, fits=0)
    with pytest.raises(ModelError) as raised:
        _smoothed(model).certify(_case(0.6, "huge"), radius=0.1, outcome="bright", n_max=500)
    message = str(raised.value)
    assert "case 'huge': Sampling runs out of memory on a single sample" in message
    assert "OutOfMemoryError: CUDA out of memory. Tried to allocate 0.50 GiB" in message and "1.06 GiB is free" in message
    assert "use a smaller model, dtype or image" in message


def test_the_measured_footprint_sizes_the_batch_to_the_free_memory(monkeypatch):
    """On CUDA the first batch's peak memory per sample is measured; a later batch that would not fit in the free memory
    steps down before it is tried (here the readings are given, as a device would report them)."""
    model = Sampling(256)
    smoothed = _smoothed(model)
    enc = smoothed._encode(_case(0.6, "d"))
    assert smoothed._backoff.size(enc) == 256
    smoothed._backoff.footprints[backoff.input_shape(enc)] = 1e6  # 1 MB a sample
    monkeypatch.setattr(backoff, "_free_memory", lambda device: 100e6)
    assert smoothed._backoff.size(enc) == 64  # 256 -> 128 -> 64 (64 MB fit in 100 MB)
    monkeypatch.setattr(backoff, "_free_memory", lambda device: 1e9)
    assert smoothed._backoff.size(enc) == 64  # learned: it does not grow back, so the batches stay on one grid


def test_a_smaller_batch_splits_the_failing_one_into_whole_batches():
    """For every grid batch size: at most half the failing size, exactly half where that is on the grid, and a divisor: every
    boundary of the failing batch grid is a boundary of the smaller one (the retried batches are whole batches of it)."""
    assert smaller_batch(1) is None and smaller_batch(96) == 32 and smaller_batch(24) == 12 and smaller_batch(7) == 1
    bounds = lambda b: {batch_end(i, b, 2048) for i in range(2048)}  # noqa: E731
    for size in sorted({grid_batch(s) for s in [*range(2, 400), 480, 512, 1000, 1024]}):
        smaller = smaller_batch(size)
        assert smaller <= size // 2 and size % smaller == 0 and (smaller < CHUNK or smaller % CHUNK == 0)
        if size % 2 == 0 and (size // 2 < CHUNK or size // 2 % CHUNK == 0):
            assert smaller == size // 2
        assert bounds(size) <= bounds(smaller)
