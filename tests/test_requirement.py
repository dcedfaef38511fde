"""certkit.requirement: the one settings table, and the Requirement and Noise values built and checked from it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from certkit.errors import RequirementError
from certkit.noise import Gaussian, Mask, UniformReplace
from certkit.requirement import BY_NAME, SETTINGS, Noise, Requirement, positive_integer, unit_interval


def test_table_defines_each_setting_once_with_a_default_help_and_a_check_that_accepts_the_default():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)) == len(BY_NAME)
    assert set(names) == {"sigma", "beta", "kernel", "alpha", "threshold", "n_max", "outcome", "timeout"}
    for setting in SETTINGS:
        assert setting.help and setting.error(setting.default) is None
    assert (BY_NAME["alpha"].default, BY_NAME["threshold"].default, BY_NAME["n_max"].default) == (0.01, 0.5, 10_000)


@pytest.mark.parametrize("name, value, message", [
    ("sigma", -1.0, "sigma must be > 0"), ("sigma", math.inf, "sigma must be > 0"),
    ("beta", 1.0, "beta must lie in [0, 1)"), ("kernel", "gauss", "kernel must be 'uniform' or 'mask'"),
    ("alpha", 0.0, "alpha must lie strictly between 0 and 1"), ("threshold", 1.0, "threshold must lie strictly between 0 and 1"),
    ("n_max", 0, "n_max must be a positive integer"), ("timeout", 0.0, "timeout must be a positive number of seconds"),
])
def test_each_check_names_its_setting(name, value, message):
    assert BY_NAME[name].error(value).startswith(message)


def test_unit_interval_and_positive_integer_refuse_bools_and_non_numbers():
    assert unit_interval("alpha", True) and unit_interval("alpha", "0.1") and unit_interval("alpha", 0.5) is None
    assert "at least 1e-300" in unit_interval("alpha", 1e-310, 1e-300)
    assert positive_integer("n", True) and positive_integer("n", 2.0) and positive_integer("n", 3) is None


def test_requirement_normalises_and_is_frozen():
    r = Requirement("bright", edits=1, radius=1, alpha=0.05, threshold=0.5, n_max=200)
    assert (r.edits, r.radius, r.alpha, r.threshold, r.n_max) == (1, 1.0, 0.05, 0.5, 200) and isinstance(r.radius, float)
    assert Requirement("bright") == Requirement("bright", 0, 0.0, 0.01, 0.5, 10_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.alpha = 0.1


@pytest.mark.parametrize("kwargs, message", [
    (dict(edits=-1), "edits must be a non-negative integer number of token positions, got -1"),
    (dict(edits=1.5), "edits must be a non-negative integer"),
    (dict(radius=math.nan), "radius must be a finite, non-negative image l2 distance"),
    (dict(alpha=0.0), "alpha must lie strictly between 0 and 1"),
    (dict(alpha=1e-310), "alpha must lie strictly between 0 and 1 (and be at least 1e-300"),
    (dict(threshold=True), "threshold must lie strictly between 0 and 1"),
    (dict(n_max=0), "n_max must be a positive integer, got 0"),
])
def test_requirement_refuses_a_bad_field_by_name(kwargs, message):
    with pytest.raises(RequirementError) as raised:
        Requirement("bright", **kwargs)
    assert message in str(raised.value)


def test_requirement_outcome_is_text():
    with pytest.raises(RequirementError, match="outcome must be an outcome label"):
        Requirement(3)


def test_noise_builds_the_kernels():
    assert Noise(0.5, 0.25, "uniform", 100).image() == Gaussian(0.5)
    assert Noise(0.5, 0.25, "uniform", 100).text() == UniformReplace(0.25, 100)
    assert Noise(0.5, 0.25, "mask").text() == Mask(0.25)
    assert Noise(0.5, 0.0).text() is None and Noise(None, 0.0).image() is None
    with pytest.raises(RequirementError, match="needs vocab"):
        Noise(0.5, 0.25, "uniform").text()


@pytest.mark.parametrize("kwargs, message", [
    (dict(sigma=0.0), "sigma must be > 0"), (dict(beta=1.0), "beta must lie in [0, 1)"),
    (dict(kernel="gauss"), "kernel must be 'uniform' or 'mask'"), (dict(vocab=1), "vocab must be an integer >= 2"),
])
def test_noise_refuses_a_bad_field_by_name(kwargs, message):
    with pytest.raises(RequirementError) as raised:
        Noise(**kwargs)
    assert message in str(raised.value)


@pytest.mark.parametrize("image, text", [
    (Gaussian(0.5), UniformReplace(0.25, 100)), (Gaussian(0.5), Mask(0.3)), (Gaussian(0.5), None), (None, Mask(0.3)),
])
def test_noise_of_certificate_rebuilds_the_kernels_it_was_made_with(image, text):
    record = {"image_kernel": image.params() if image else None, "text_kernel": text.params() if text else None}
    noise = Noise.of_certificate(record)
    assert noise.image() == image and noise.text() == text


def test_noise_of_an_unreadable_certificate_raises_what_readers_catch():
    for record in ({"image_kernel": {"kind": "gaussian"}}, {"image_kernel": {"sigma": "x"}}, {"text_kernel": {"kind": "mask"}}):
        with pytest.raises((KeyError, TypeError, ValueError)):
            Noise.of_certificate(record)


# ---------------------------------------------------------------- the engine takes it, the certificate carries it


def _smoothed():
    import numpy as np

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.oracles import LabelOracle
    from certkit.testing import BrightnessClassifier

    model = TorchClassifier(BrightnessClassifier(), ["dark", "bright"], lambda text: [2 + len(w) % 8 for w in text.split()],
                            vocab_size=10, special_ids=[0, 1], mask_id=0)
    smoothed = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), text=UniformReplace(0.2, 8), seed=3)
    return smoothed, Case("c", "pick it up", np.full((3, 8, 8), 0.9, dtype=np.float32))


def test_certify_takes_a_requirement_as_its_keywords_and_the_certificate_carries_it_and_its_noise():
    smoothed, case = _smoothed()
    requirement = Requirement("bright", edits=1, radius=0.05, alpha=0.05, threshold=0.5, n_max=300)
    cert = smoothed.certify(case, requirement)
    assert cert.to_dict() | {"timings": None, "cached": None} == smoothed.certify(
        case, radius=0.05, edits=1, outcome="bright", alpha=0.05, threshold=0.5, n_max=300).to_dict() | {"timings": None, "cached": None}
    assert cert.requirement == requirement
    assert cert.noise == Noise(0.5, 0.2, "uniform", 8) and cert.noise.text() == smoothed.text
    assert smoothed.frontier(case, max_edits=1, outcome="bright", n=64).requirement == Requirement("bright", 1, 0.0, 0.01, 0.5, 64)


def test_certify_refuses_a_requirement_with_keywords_and_no_outcome():
    smoothed, case = _smoothed()
    with pytest.raises(TypeError, match="not both"):
        smoothed.certify(case, Requirement("bright"), radius=0.1)
    with pytest.raises(TypeError, match="needs the outcome"):
        smoothed.certify(case, radius=0.1)
    with pytest.raises(RequirementError, match="requirement must be a certkit.requirement.Requirement"):
        smoothed.certify(case, 0.1)


@pytest.mark.parametrize("text", [UniformReplace(0.9, 10), Mask(0.9), None])
def test_failure_message_states_the_radius_the_certificates_own_noise_reaches(text):
    from certkit import bounds
    from certkit.certificate import Certificate
    from certkit.plugin.fixtures import failure_message

    cert = Certificate(case_id="c", outcome="bright", edits=1 if text else 0, radius=0.3, threshold=0.5, alpha=0.01,
                       status="not certified", p_a_lower=0.99, p_a_upper=0.995, p_star=0.95, p_adv=0.4, n=100, successes=85, seed=0,
                       n_max=100, image_kernel=Gaussian(0.25).params(), text_kernel=text.params() if text else None)
    r = float(bounds.max_radius(0.99, Gaussian(0.25), text, cert.edits, 0.5))
    assert math.isfinite(r) and f"the largest certified radius at {cert.edits} edit(s) is {r:.4f}" in failure_message(cert)
    unreadable = dataclasses.replace(cert, image_kernel={"kind": "gaussian"})
    assert "largest certified radius" not in failure_message(unreadable)


@pytest.mark.parametrize("noise", [Noise(0.5, 0.0), Noise(0.25, 0.1, "uniform", 35), Noise(None, 0.3, "mask")], ids=str)
def test_a_certificate_record_gives_back_the_settings_it_was_made_under(noise):
    from certkit.certificate import Certificate
    from certkit.requirement import caption, of_certificate

    requirement = Requirement("harmless", edits=1, radius=0.2, alpha=0.001, threshold=0.6, n_max=5000)
    cert = Certificate("c", status="certified", p_a_lower=0.9, p_a_upper=0.99, p_star=0.8, p_adv=0.7, n=10, successes=9, seed=0,
                       image_kernel=noise.image() and noise.image().params(), text_kernel=noise.text() and noise.text().params(),
                       **{k: getattr(requirement, k) for k in ("outcome", "edits", "radius", "threshold", "alpha", "n_max")})
    values = of_certificate(cert.to_dict())
    assert values == {"outcome": "harmless", "threshold": 0.6, "alpha": 0.001, "n_max": 5000, "vocab": noise.vocab,
                      "sigma": noise.sigma, "beta": noise.beta, "kernel": noise.kernel}
    phrases = caption(values)
    assert phrases[:2] == ["outcome harmless", "tau 0.6"] and phrases[-2:] == ["alpha 0.001", "n_max 5000"]
    assert (f"sigma {noise.sigma:g}" if noise.sigma else "no image noise") in phrases
    assert ("beta 0 (no text noise)" if not noise.beta else
            "mask kernel" if noise.kernel == "mask" else "uniform replacement over 35 tokens") in phrases


def test_a_setting_added_to_the_table_shows_in_the_reports_captions(monkeypatch):
    """The report's captions are the table's: a new row with a phrase appears in every table caption, unedited report."""
    import certkit.requirement as requirement
    from certkit.report import render_report
    from certkit.results import build

    extra = requirement.Setting("seed_offset", int, 0, "a new setting", shown=lambda v: f"seed offset {v['seed_offset']}")
    monkeypatch.setattr(requirement, "SETTINGS", (*requirement.SETTINGS, extra))
    cert = {"case_id": "c", "outcome": "harmless", "edits": 0, "radius": 0.1, "threshold": 0.5, "alpha": 0.01, "n_max": 100,
            "status": "certified", "p_a_lower": 0.9, "p_a_upper": 0.99, "p_star": 0.6, "p_adv": 0.8, "n": 100, "successes": 95,
            "image_kernel": {"kind": "gaussian", "sigma": 0.25}, "text_kernel": None, "seed_offset": 7}
    doc = build([{"nodeid": "t.py::test_a[c]", "status": "certified", "certificates": [cert]}], run={}, cases={})
    assert "<bdi>n_max 100</bdi> · <bdi>seed offset 7</bdi>" in render_report(doc)
