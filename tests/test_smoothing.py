"""The smoothing engine (certkit/smoothing.py) end to end on real (tiny) models, offline, on the CPU: sequential
stopping, determinism, batches, one sample stream per case, a model's own errors, and draws."""

import json
import math

import numpy as np
import pytest
import torch

from certkit import Case, Certificate, Smoothed
from certkit.cache import CountCache
from certkit.models import ModelError, TorchClassifier
from certkit.noise import Gaussian, UniformReplace
from certkit.oracles import LabelOracle
from certkit.testing import BrightnessClassifier, CoinFlip, KeywordImageClassifier
from tests.brightness import VOCAB, brightness_model, case, tokenize

# ---------------------------------------------------------------- sequential stopping, determinism


def test_sequential_stops_early_in_both_directions():
    smoothed = Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=0)
    sure = smoothed.certify(case(0.9), radius=0.05, outcome="bright", n_max=100_000)
    assert sure.certified and sure.n <= 200
    hopeless = smoothed.certify(case(0.1), radius=0.05, outcome="bright", n_max=100_000)
    assert hopeless.status == "not certified" and hopeless.n <= 200


def test_a_certificate_records_how_its_labels_were_computed(monkeypatch):
    """The runtime (device, torch, kernel flags) travels with each certificate and its JSON: counts repeat bit for bit
    only on the same runtime; the noise's device is part of the stream's cache key (CPU and CUDA draw differently)."""
    import certkit.streams

    smoothed = Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=0)
    cert = smoothed.certify(case(0.9), radius=0.05, outcome="bright")
    assert cert.runtime["device"] == "cpu" and cert.runtime["deterministic_algorithms"] in (True, False)
    assert Certificate.from_dict(json.loads(json.dumps(cert.to_dict()))).runtime == cert.runtime
    keys = []
    monkeypatch.setattr(certkit.streams, "stream_key", lambda **parts: keys.append(parts) or "k")
    smoothed._streams.stream(case(0.9), smoothed._encode(case(0.9)))
    assert keys[0]["noise_device"] == "cpu"


def test_inconclusive_at_the_cap():
    smoothed = Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=0)
    # mean pixel 0.5 + 0.25 * N(0,1)/sqrt(192): p_A ~ 1/2, so radius 0 at tau 1/2 stays undecided
    cert = smoothed.certify(case(0.5), radius=0.0, outcome="bright", n_max=64)
    assert cert.status == "inconclusive" and cert.n == 64 and not cert.certified


def test_results_do_not_depend_on_order_or_batch_size():
    oracle = LabelOracle(["dark", "bright"])
    a = Smoothed(brightness_model(batch_size=32), oracle, image=Gaussian(0.5), seed=3)
    b = Smoothed(brightness_model(batch_size=96), oracle, image=Gaussian(0.5), seed=3)
    c1, c2 = case(0.55, cid="x"), case(0.6, cid="y")
    first = [a.certify(c, radius=0.1, outcome="bright", n_max=500) for c in (c1, c2)]
    second = [b.certify(c, radius=0.1, outcome="bright", n_max=500) for c in (c2, c1)][::-1]
    for x, y in zip(first, second):
        assert (x.status, x.n, x.successes, x.p_a_lower, x.seed) == (y.status, y.n, y.successes, y.p_a_lower, y.seed)


def test_hybrid_certificate_on_an_interaction_only_classifier():
    trigger = tokenize("knife")[0]
    model = TorchClassifier(KeywordImageClassifier(trigger), ["safe", "unsafe"], tokenize, vocab_size=VOCAB, special_ids=[0, 1], mask_id=0)
    smoothed = Smoothed(model, LabelOracle(["safe", "unsafe"]), image=Gaussian(0.1), text=UniformReplace(0.1, VOCAB - 2), seed=0)
    cert = smoothed.certify(case(0.9), radius=0.2, edits=1, outcome="unsafe", threshold=4.6e-5, n_max=5_000)
    assert cert.certified
    fr = smoothed.frontier(case(0.9), max_edits=3, outcome="unsafe", n=500, threshold=4.6e-5)
    assert len(fr.frontier) == 4 and all(fr.frontier[i] >= fr.frontier[i + 1] for i in range(3))
    assert fr.frontier[1] > 0


# ---------------------------------------------------------------- batches and streams


def test_large_images_run_in_batches_their_memory_allows_with_the_same_counts():
    """A batch of noisy copies of a large image is bounded by max_batch_bytes (down to one sample); the samples
    and so the counts do not depend on the batch size."""
    sizes = []

    class Recording(BrightnessClassifier):
        def forward(self, ids, images):
            sizes.append(images.shape[0])
            return super().forward(ids, images)

    big = Case("big", "hand the knife to the person", np.full((3, 256, 256), 0.52, dtype=np.float32))
    per_sample = 3 * 4 * 3 * 256 * 256
    model = TorchClassifier(Recording(), ["dark", "bright"], tokenize, vocab_size=VOCAB, special_ids=[0, 1], batch_size=64)
    text = UniformReplace(0.2, VOCAB - 2)
    small = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), text=text, max_batch_bytes=2 * per_sample)
    a = small.frontier(big, max_edits=1, outcome="bright", n=96)
    assert max(sizes) == 2
    sizes.clear()
    b = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), text=text).frontier(big, max_edits=1, outcome="bright", n=96)
    assert max(sizes) == 64
    assert (a.successes, a.label_counts) == (b.successes, b.label_counts)


def test_requirements_on_one_case_read_one_stream(tmp_path):
    """Six radii on one case cost the most demanding one's samples, each reads a prefix of the same stream (its
    successes equal a fresh run of that requirement alone), the frontier reads it too, and a new process extends
    the cached stream instead of redrawing it."""
    oracle = LabelOracle(["dark", "bright"])
    shared = Smoothed(brightness_model(batch_size=32), oracle, image=Gaussian(0.5), seed=5)
    radii = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    certs = [shared.certify(case(0.53), radius=r, outcome="bright", n_max=2000) for r in radii]
    forward = sum(c.timings.get("forward_samples", 0) for c in certs)
    longest = max(c.n for c in certs)
    assert math.ceil(longest / 32) * 32 <= forward <= 1.25 * longest + 32 + 32 and forward < sum(c.n for c in certs)
    for r, c in zip(radii, certs):
        alone = Smoothed(brightness_model(batch_size=32), oracle, image=Gaussian(0.5), seed=5).certify(
            case(0.53), radius=r, outcome="bright", n_max=2000)
        assert (alone.n, alone.successes, alone.status) == (c.n, c.successes, c.status)
    frontier = shared.frontier(case(0.53), outcome="bright", n=longest)
    assert frontier.timings.get("forward_samples", 0) == 0
    first = Smoothed(brightness_model(batch_size=32), oracle, image=Gaussian(0.5), seed=5, cache=tmp_path).certify(
        case(0.53), radius=0.6, outcome="bright", n_max=2000)
    later = Smoothed(brightness_model(batch_size=32), oracle, image=Gaussian(0.5), seed=5, cache=tmp_path).certify(
        case(0.53), radius=0.1, outcome="bright", n_max=2000)
    assert first.timings["forward_samples"] < later.n  # the first run's draws do not cover the later requirement
    stored = CountCache(tmp_path).get(next(iter(shared._streams.memory)), oracle.all_labels).size
    assert first.timings["forward_samples"] + later.timings["forward_samples"] == stored  # it extends the stream, redraws none


# ---------------------------------------------------------------- a model's own errors, once, with what it got


class ThreeChannelConv(torch.nn.Module):
    """A guard whose network needs 3 channels and at least 3x3 pixels (a conv without padding)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)

    def forward(self, ids, images):
        return self.conv(images).mean(dim=(2, 3))


@pytest.mark.parametrize("shape, words", [((1, 8, 8), "expected input[32, 1, 8, 8] to have 3 channels"),
                                          ((3, 1, 1), "Kernel size can't be greater than actual input size")],
                         ids=["greyscale", "1x1"])
def test_a_models_own_error_names_the_case_the_inputs_and_its_message(shape, words):
    model = TorchClassifier(ThreeChannelConv(), ["dark", "bright"], tokenize, vocab_size=VOCAB, special_ids=[0, 1], batch_size=32)
    smoothed = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=0)
    bad = Case("grey-cat", "hand the knife to the person", np.full(shape, 0.5, dtype=np.float32))
    with pytest.raises(ModelError) as raised:
        smoothed.certify(bad, radius=0.05, outcome="bright", n_max=200)
    message = str(raised.value)
    assert "case 'grey-cat'" in message and "TorchClassifier.run failed on a batch of 32 noisy samples" in message
    assert f"token ids (32, 6) torch.int64 and images (32, {', '.join(map(str, shape))}) torch.float32" in message
    assert "RuntimeError: " in message and words in message
    assert isinstance(raised.value.__cause__, RuntimeError)  # the original, chained


def test_certkits_own_errors_and_interrupts_from_a_model_pass_unwrapped():
    class Raising(torch.nn.Module):
        def forward(self, ids, images):
            raise self._error  # set per run below (private: not part of the fingerprint)

    module = Raising()
    model = TorchClassifier(module, ["dark", "bright"], tokenize, vocab_size=VOCAB, special_ids=[0, 1], batch_size=32)
    smoothed = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=0)
    for error in (ModelError("the adapter's own message"), KeyboardInterrupt()):
        module._error = error
        with pytest.raises(type(error)) as raised:
            smoothed.certify(case(), radius=0.05, outcome="bright", n_max=200)
        assert raised.value is error


# ---------------------------------------------------------------- draws: what the decision needs, the same decisions


def _whole_stream_decision(smoothed, c, radius, outcome, n_max, alpha=0.01, threshold=0.5):
    """The decision of a sample-by-sample scan of the case's whole stream (n_max samples, drawn by the frontier)."""
    from certkit.sequential import MixtureTest

    stream = Smoothed(smoothed.model, smoothed.oracle, image=smoothed.image, text=smoothed.text, seed=smoothed.seed)
    stream.frontier(c, max_edits=0, outcome=outcome, n=n_max)
    labels = next(iter(stream._streams.memory.values()))[:n_max]
    test = MixtureTest(smoothed._required(radius, 0, threshold)[1], alpha, n_max)
    return test.first_decision(labels == smoothed._label_index[outcome])


@pytest.mark.parametrize("value, radius, n_max, batch", [(0.9, 0.05, 2000, 256), (0.53, 0.1, 2000, 32), (0.6, 0.3, 3000, 96),
                                                         (0.2, 0.1, 2000, 7), (0.5, 0.0, 300, 64)])
def test_decisions_and_counts_are_those_of_a_scan_of_the_whole_stream(value, radius, n_max, batch):
    """The looks grow from one batch, but the test scans sample by sample: n, successes and the decision are those of a
    scan of the whole stream, certified, not certified and inconclusive alike."""
    smoothed = Smoothed(brightness_model(batch_size=batch), LabelOracle(["dark", "bright"]), image=Gaussian(0.5), seed=2)
    cert = smoothed.certify(case(value), radius=radius, outcome="bright", n_max=n_max)
    n, k, decision = _whole_stream_decision(smoothed, case(value), radius, "bright", n_max)
    assert (cert.n, cert.successes, cert.status) == (n, k, {"continue": "inconclusive"}.get(decision.value, decision.value))


@pytest.mark.parametrize("p_star", [0.96, 0.9996])
@pytest.mark.parametrize("batch", [64, 512])
def test_a_requirement_that_fails_early_draws_about_what_its_decision_used(p_star, batch):
    """Issue 22.6: a coin flip at p* = 0.96 or 0.9996 is decided within a few samples; certify used to draw the samples a
    certificate would need first (160 and 13,664). Now: at most 1.25 n + one batch + one chunk forward passes."""
    from statistics import NormalDist

    model = TorchClassifier(CoinFlip(), ["dark", "bright"], tokenize, vocab_size=VOCAB, special_ids=[0, 1], batch_size=batch)
    smoothed = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), seed=0)
    cert = smoothed.certify(case(0.5), radius=0.5 * NormalDist().inv_cdf(p_star), outcome="bright", n_max=100_000)
    assert cert.status == "not certified" and abs(cert.p_star - p_star) < 1e-9
    assert cert.timings["forward_samples"] <= 1.25 * cert.n + batch + 32
    assert cert.timings["batch_size"] == batch
