"""The certify test (certkit.sequential.MixtureTest): validity by exact computation over every sample path and by
simulation at p_A = p*, agreement between its scan and its per-(k, n) decision, and its bounds."""

from __future__ import annotations

import numpy as np
import pytest

from certkit.sequential import MixtureTest
from certkit.stats import Decision


def _exact_error(test: MixtureTest, p: float) -> tuple[float, float]:
    """P[certified], P[not certified] at true p_A = p, over every path of ``n_max`` samples: the distribution of
    successes among paths still running, advanced one sample at a time and absorbed at each boundary."""
    cert_k, fut_k = test.boundaries()
    alive = np.array([1.0])  # P[k successes after n samples, no decision yet], k = 0..n
    certified = not_certified = 0.0
    for n in range(1, test.n_max + 1):
        nxt = np.zeros(n + 1)
        nxt[:-1] += alive * (1 - p)
        nxt[1:] += alive * p
        c, f = cert_k[n - 1], fut_k[n - 1]
        certified += nxt[c:].sum()
        not_certified += nxt[: f + 1].sum()
        nxt[c:] = 0.0
        nxt[: f + 1] = 0.0
        alive = nxt
    return certified, not_certified


def test_the_boundaries_are_the_decisions():
    """Two numbers per n decide the test: checked against decide() everywhere near them and at random (k, n)."""
    rng = np.random.default_rng(0)
    for p_star, n_max in ((0.84, 3000), (0.5, 2000), (0.98, 3000)):
        test = MixtureTest(p_star, 0.01, n_max)
        cert_k, fut_k = test.boundaries()
        points = [(int(rng.integers(0, n + 1)), int(n)) for n in rng.integers(1, n_max + 1, 500)]
        for n in rng.integers(1, n_max + 1, 200):
            points += [(int(k), int(n)) for k in (cert_k[n - 1] - 1, cert_k[n - 1], fut_k[n - 1], fut_k[n - 1] + 1) if 0 <= k <= n]
        for k, n in points:
            want = "certified" if k >= cert_k[n - 1] else "not certified" if k <= fut_k[n - 1] else None
            got = test.decide(k, n)
            assert (got.value if want else got in (Decision.CONTINUE, Decision.INCONCLUSIVE)) == (want or True), (k, n)


@pytest.mark.parametrize("p_star, alpha, n_max", [(0.69, 0.01, 5000), (0.84, 0.05, 5000), (0.98, 0.01, 5000),
                                                  (0.5, 0.1, 3000), (0.2, 0.01, 3000)])
def test_error_rates_by_exact_computation(p_star, alpha, n_max):
    """At p_A = p* (the worst case of each null) neither wrong decision exceeds alpha, summed over every stopping
    time up to n_max; just inside each null it is smaller still."""
    test = MixtureTest(p_star, alpha, n_max)
    cert, against = _exact_error(test, p_star)
    assert cert <= alpha and against <= alpha
    below, _ = _exact_error(test, p_star - 0.01)
    _, above = _exact_error(test, min(0.999, p_star + 0.01))
    assert below <= cert and above <= against


@pytest.mark.slow
def test_false_certification_rate_by_simulation():
    """20,000 requirements at p_A = p* (each its own stream of up to 10,000 samples): certified at most alpha."""
    rng = np.random.default_rng(12)
    for p_star, alpha in ((0.84, 0.01), (0.6, 0.05)):
        decision, _ = MixtureTest(p_star, alpha, 10_000).simulate(p_star, 20_000, rng, block=1024)
        rate = (decision == "certified").mean()
        assert rate <= alpha, (p_star, alpha, rate)


def test_scan_agrees_with_decide_and_stops_at_the_first_crossing():
    rng = np.random.default_rng(3)
    test = MixtureTest(0.8, 0.01, 4000)
    for p in (0.7, 0.85, 0.95, 1.0):
        outcomes = rng.random(4000) < p
        n, k, decision = test.first_decision(outcomes[:100])
        n, k, decision = test.first_decision(outcomes[n:], k, n) if decision is Decision.CONTINUE else (n, k, decision)
        if decision is Decision.CONTINUE:
            n, k, decision = test.first_decision(outcomes[n:], k, n)
        assert decision is test.decide(k, n)
        assert k == outcomes[:n].sum()
        assert all(test.decide(int(outcomes[:m].sum()), m) is Decision.CONTINUE for m in range(1, n))


def test_every_sample_agreeing_certifies_near_the_information_limit():
    """All-agree: the point mass at p = 1 certifies within ~25% of log(1/alpha) / log(1/p*)."""
    for p_star in (0.69, 0.84, 0.98):
        test = MixtureTest(p_star, 0.01, 100_000)
        limit = np.log(100) / -np.log(p_star)
        assert limit <= test.min_samples_to_certify() <= 1.25 * limit + 1


def test_bounds_bracket_the_data_and_a_certified_lower_bound_meets_p_star():
    test = MixtureTest(0.84, 0.01, 100_000)
    rng = np.random.default_rng(5)
    n, k, decision = test.first_decision(rng.random(20_000) < 0.93)
    assert decision is Decision.CERTIFIED
    lower, upper = test.bounds(k, n)
    assert 0.84 <= lower <= k / n <= upper
    lower, upper = test.bounds(700, 1000)
    assert lower < 0.7 < upper < 0.84


def test_an_unreachable_budget_is_reported_with_the_samples_it_needs():
    test = MixtureTest(0.9999963, 0.01, 10_000)
    assert test.min_samples_to_certify() is None
    assert 1.2e6 < test.samples_to_certify() < 1.6e6
