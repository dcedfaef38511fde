"""Certificates (certkit/certificate.py): a certificate round-trips through JSON, and its recorded numbers meet its own
threshold at its own lower bound."""

import json

import numpy as np

from certkit import Certificate, Smoothed
from certkit.errors import RequirementError
from certkit.noise import Gaussian, UniformReplace
from certkit.oracles import LabelOracle
from certkit.stats import adjust_for_oracle_error
from tests.brightness import _smoothed, bright_case, brightness_model, case


def test_certificate_round_trips_through_json():
    smoothed = Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=0)
    for cert in (smoothed.certify(case(0.9), radius=0.05, outcome="bright"), smoothed.frontier(case(0.9), outcome="bright", n=100)):
        back = Certificate.from_dict(json.loads(json.dumps(cert.to_dict())))
        assert back == cert


def test_a_certificate_meets_its_own_threshold_at_its_own_lower_bound():
    """Exact ties: for 600 random requirements, the level the test must show for p_A, less the oracle's error,
    has a worst case that meets the threshold (raw p* misses it by ~1e-18 in about half of them), in double precision
    and in exact arithmetic (certkit.boundary)."""
    from certkit import bounds
    from certkit.boundary import boundary
    from certkit.oracles import LabelOracle

    rng = np.random.default_rng(0)
    for i in range(600):
        error = [0.0, 0.01, 0.037][i % 3]
        text = UniformReplace(0.2, 28) if i % 2 else None
        image = Gaussian(float(rng.uniform(0.1, 1.0)))
        s = Smoothed(brightness_model(), LabelOracle(["dark", "bright"], error=error), image=image, text=text)
        radius, edits = float(rng.uniform(0, 0.5)), int(rng.integers(0, 3)) if text else 0
        tau = 0.5 if i % 4 == 0 else float(rng.uniform(1e-6, 0.9))
        try:
            p_star, p_test = s._required(radius, edits, tau)
        except RequirementError:
            continue
        lower = adjust_for_oracle_error(p_test, error)
        assert lower >= p_star
        assert bounds.is_certified(bounds.worst_case(lower, image, radius, text, edits), tau), (radius, edits, tau, error)
        assert boundary(image, radius, text, edits, tau).clears(lower), (radius, edits, tau, error)


def test_a_certificate_never_records_numbers_that_miss_its_threshold():
    """Every certified record from the engine satisfies p_adv >= tau (strictly above 1/2) at its own lower bound."""
    from certkit import bounds

    s = _smoothed()
    for radius in (0.0, 0.05, 0.1, 0.2):
        for tau in (0.5, 0.3, 4.6e-5):
            cert = s.certify(bright_case(), radius=radius, outcome="bright", threshold=tau, n_max=2000)
            if cert.certified:
                assert bounds.is_certified(cert.p_adv, tau) and cert.p_a_lower >= cert.p_star and cert.margin > 0
