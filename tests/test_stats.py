"""Confidence bounds, the sample-size law, and the validity of the tests by simulation."""

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from bench.bench_sequential import simulate
from certkit import bounds, stats
from certkit.noise import Gaussian, UniformReplace
from certkit.stats import Decision, SequentialTest


def test_clopper_pearson_published_value():
    lower, upper = stats.clopper_pearson(990, 1000, 1e-3)
    assert lower == pytest.approx(0.976036, abs=5e-7)
    assert 0.99 < upper < 1.0


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (57, 80), (999, 1000)])
@pytest.mark.parametrize("alpha", [0.05, 1e-3])
def test_clopper_pearson_inverts_the_binomial_tail(k, n, alpha):
    lower, upper = stats.clopper_pearson(k, n, alpha)
    if k > 0:  # P[K >= k | p = lower] = alpha: lower is the smallest p not rejected
        assert binom.sf(k - 1, n, lower) == pytest.approx(alpha, rel=1e-8)
    else:
        assert lower == 0.0
    if k < n:
        assert binom.cdf(k, n, upper) == pytest.approx(alpha, rel=1e-8)
    else:
        assert upper == 1.0


def test_all_agree_bound_is_alpha_to_one_over_n():
    for n in (1, 10, 100, 10_000):
        assert stats.clopper_pearson(n, n, 0.01)[0] == pytest.approx(0.01 ** (1 / n), rel=1e-12)
        assert stats.max_certifiable_p_a(n, 0.01) == pytest.approx(0.01 ** (1 / n), rel=1e-12)


def test_sample_size_law_of_seed_000():
    sigma, alpha = 0.5, 1e-3
    for r in (0.1, 0.5, 1.0):
        n = stats.samples_needed(norm.cdf(r / sigma), alpha)
        assert n == math.ceil(math.log(1 / alpha) / math.log(1 / norm.cdf(r / sigma)))
        # n samples reach radius r, n - 1 do not
        assert sigma * norm.ppf(stats.max_certifiable_p_a(int(n), alpha)) >= r
        assert sigma * norm.ppf(stats.max_certifiable_p_a(int(n) - 1, alpha)) < r
    assert stats.samples_needed(0.95, 0.01, oracle_error=0.06) == math.inf
    assert stats.samples_needed(0.9, 0.01, oracle_error=0.05) == stats.samples_needed(0.95, 0.01)


def test_oracle_error_adjustment():
    assert stats.adjust_for_oracle_error(0.97, 0.02) == pytest.approx(0.95)
    assert stats.adjust_for_oracle_error(0.01, 0.02) == 0.0
    with pytest.raises(ValueError, match="oracle error"):
        stats.adjust_for_oracle_error(0.9, 1.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stats.clopper_pearson(5, 4, 0.01), "k <= n"),
        (lambda: stats.clopper_pearson(1, 0, 0.01), "n >= 1"),
        (lambda: stats.clopper_pearson(1, 5, 0.0), "alpha"),
        (lambda: stats.clopper_pearson(1, 5, 1.0), "alpha"),
        (lambda: SequentialTest(0.9, 0.01, 0), "n_max"),
        (lambda: SequentialTest(0.9, 2.0, 100), "alpha"),
        (lambda: SequentialTest(0.9, 0.01, 100, growth=1.0), "growth"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sequential_decisions_and_early_stopping():
    test = SequentialTest(0.9, 0.01, 100_000)
    assert test.looks[0] == 32 and test.looks[-1] == 100_000
    assert test.decide(test.looks[3], test.looks[3]) is Decision.CERTIFIED
    assert test.decide(10, 32) is Decision.NOT_CERTIFIED
    assert test.decide(29, 32) is Decision.CONTINUE
    k = round(0.9 * 100_000)
    assert test.decide(k, 100_000) is Decision.INCONCLUSIVE
    with pytest.raises(ValueError, match="not a look"):
        test.decide(5, 33)


def test_simulated_decisions_agree_with_decide():
    rng = np.random.default_rng(3)
    test = SequentialTest(0.8, 0.05, 2_000)
    decisions, used = simulate(0.82, test, 300, np.random.default_rng(3))
    # replay each replicate through the public API with the same random stream
    rng = np.random.default_rng(3)
    ks = np.zeros(300, dtype=np.int64)
    n_prev = 0
    final = {}
    for look in test.looks:
        alive = np.array([i not in final for i in range(300)])
        ks[alive] += rng.binomial(look - n_prev, 0.82, alive.sum())
        n_prev = look
        for i in np.nonzero(alive)[0]:
            d = test.decide(int(ks[i]), look)
            if d is not Decision.CONTINUE:
                final[i] = (d.value, look)
    assert [final[i] for i in range(300)] == list(zip(decisions, used))


# Monte Carlo tolerance: alpha + 3 standard errors of a binomial proportion.
def _within_alpha(failures, trials, alpha):
    return failures / trials <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)


@pytest.mark.parametrize("p_star", [0.6, 0.9, 0.99])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_fixed_n_false_certification_rate(p_star, alpha):
    """True p_A exactly at p*: the Clopper-Pearson bound certifies at most an alpha fraction."""
    rng = np.random.default_rng(11)
    trials, n = 20_000, 500
    k = rng.binomial(n, p_star, trials)
    lower, _ = stats.clopper_pearson(k, np.full(trials, n), alpha)
    assert _within_alpha(int((lower >= p_star).sum()), trials, alpha)
    # and the exact rate, by summing the binomial pmf over the certifying counts
    ks = np.arange(n + 1)
    lo, _ = stats.clopper_pearson(ks, np.full(n + 1, n), alpha)
    assert binom.pmf(ks[lo >= p_star], n, p_star).sum() <= alpha


@pytest.mark.parametrize("p_star", [0.6, 0.9, 0.99])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_sequential_false_certification_rate(p_star, alpha):
    """True p_A exactly at p*, every stopping time: certified at most an alpha fraction of the time."""
    test = SequentialTest(p_star, alpha, 20_000)
    decisions, _ = simulate(p_star, test, 20_000, np.random.default_rng(12))
    assert _within_alpha(int((decisions == "certified").sum()), 20_000, alpha)


def test_sequential_false_certification_on_a_real_requirement():
    """p* from the hybrid certificate (d = 1, eps = 0.25, tau = 4.6e-5) rather than a round number."""
    p_star = float(bounds.required_p_a(Gaussian(0.5), 0.25, UniformReplace(0.25, 32_000), 1, 4.6e-5))
    test = SequentialTest(p_star, 0.01, 50_000)
    decisions, _ = simulate(p_star, test, 20_000, np.random.default_rng(13))
    assert _within_alpha(int((decisions == "certified").sum()), 20_000, 0.01)


@pytest.mark.parametrize("margin, max_mean", [(0.05, 2_000), (0.2, 200)])
def test_sequential_stops_early_when_the_answer_is_clear(margin, max_mean):
    p_star = 0.7
    test = SequentialTest(p_star, 0.01, 100_000)
    for p_true, expected in ((p_star + margin, "certified"), (p_star - margin, "not certified")):
        decisions, used = simulate(p_true, test, 2_000, np.random.default_rng(14))
        assert (decisions == expected).mean() > 0.99
        assert used.mean() < max_mean
