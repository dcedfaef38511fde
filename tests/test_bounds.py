"""Certificate maths against closed forms, published values, an independent solver and mpmath."""

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from bench import brentq_reference as reference
from certkit import bounds
from certkit.bounds.hybrid import Hybrid  # the hybrid solver itself, for the d = 0 reduction
from certkit.noise import Gaussian, Mask, UniformReplace

TAU_FLOOR = 4.6e-5


# ---------------------------------------------------------------- closed forms and published values


def test_cohen_worst_case_and_radius():
    assert bounds.worst_case(0.9, Gaussian(1.0), 0.5) == pytest.approx(0.78276, abs=5e-6)
    p = np.array([0.6, 0.9, 0.99, 0.999999])
    for sigma in (1e-3, 0.5, 1e3):
        for tau in (0.5, 0.3, TAU_FLOOR):
            expected = sigma * (norm.ppf(p) - norm.ppf(tau))
            assert np.allclose(bounds.max_radius(p, Gaussian(sigma), threshold=tau), expected, rtol=1e-12)
            eps = 0.37 * sigma
            assert np.allclose(bounds.worst_case(p, Gaussian(sigma), eps), norm.cdf(norm.ppf(p) - eps / sigma), rtol=1e-12)


@pytest.mark.parametrize(
    "beta, vocab, expected",
    [(0.2, 2, [0.875, 0.96875, 0.9921875]), (0.9, 256, [0.596471, 0.682954, 0.760551])],
)
def test_lee_et_al_2019_thresholds(beta, vocab, expected):
    got = [bounds.required_p_a(text=UniformReplace(beta, vocab), edits=d) for d in (1, 2, 3)]
    assert got == pytest.approx(expected, abs=1e-6)
    # and the forward direction: p_adv at those p_A is exactly 1/2
    for d, p in zip((1, 2, 3), got):
        assert bounds.worst_case(p, text=UniformReplace(beta, vocab), edits=d) == pytest.approx(0.5, abs=1e-12)


def test_hybrid_published_values():
    text, image = UniformReplace(0.2, 2), Gaussian(0.5)
    got = bounds.worst_case(0.99, image, [0.1, 0.25, 0.25], text, [1, 1, 2])
    assert got == pytest.approx([0.94060, 0.89909, 0.72433], abs=5e-6)


def test_hybrid_reduces_to_cohen_at_zero_edits():
    hybrid = Hybrid(0.5, UniformReplace(0.25, 100).atoms(0))
    p = np.array([0.55, 0.9, 0.999, 1 - 1e-12])
    for r in (1e-3, 0.2, 1.0, 3.0):
        got, _ = hybrid.p_adv(p, np.full(p.shape, r))
        assert np.allclose(got, norm.cdf(norm.ppf(p) - r / 0.5), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("text", [UniformReplace(0.2, 2), UniformReplace(0.25, 32_000), UniformReplace(0.6, 7), Mask(0.7)])
def test_hybrid_tends_to_the_knapsack_as_radius_vanishes(text):
    p = np.linspace(0.5, 0.999, 7)
    for d in (1, 2, 3):
        knapsack = bounds.worst_case(p, text=text, edits=d)
        near_zero = bounds.worst_case(p, Gaussian(0.5), 1e-7, text, d)
        assert np.allclose(near_zero, knapsack, atol=1e-5)


def test_mask_closed_forms():
    beta, sigma = 0.8, 0.5
    p = np.array([0.3, 0.7, 0.95, 0.999])
    for d in (1, 2, 4):
        b = beta**d
        assert np.allclose(bounds.worst_case(p, text=Mask(beta), edits=d), np.maximum(0, p - (1 - b)), atol=1e-15)
        scaled = np.clip((p - (1 - b)) / b, 0, 1)
        expected = np.where(p > 1 - b, b * norm.cdf(norm.ppf(scaled) - 0.3 / sigma), 0.0)
        assert np.allclose(bounds.worst_case(p, Gaussian(sigma), 0.3, Mask(beta), d), expected, atol=1e-12)


# ---------------------------------------------------------------- an independent solver and mpmath


def test_max_radius_matches_nested_brentq():
    rng = np.random.default_rng(7)
    p = rng.uniform(0.6, 1 - 1e-6, 25)
    d = rng.integers(1, 9, 25)
    for tau in (0.5, TAU_FLOOR):
        for beta, vocab, sigma in ((0.25, 32_000, 0.5), (0.2, 2, 0.5), (0.5, 1000, 1.0)):
            got = bounds.max_radius(p, Gaussian(sigma), UniformReplace(beta, vocab), d, tau)
            ref = np.array([reference.max_radius(pi, sigma, beta, vocab, int(di), tau) for pi, di in zip(p, d)])
            assert np.array_equal(np.isinf(got), np.isinf(ref))
            fin = np.isfinite(ref)
            assert np.allclose(got[fin], ref[fin], atol=1e-6, rtol=0)


def _mp_p_adv(p_a, sigma, r, beta, vocab, d):
    """p_adv at 40 digits by bisection in u: the arbiter where double-precision solvers disagree."""
    mp.mp.dps = 40
    lg, clean, adv = reference.uniform_atoms(beta, vocab, d)
    keep, one, other = mp.mpf(1) - beta, mp.mpf(beta) / (vocab - 1), mp.mpf(beta) * (vocab - 2) / (vocab - 1)
    log_rho = mp.log(keep * (vocab - 1) / beta)
    atoms = {}
    for a in range(d + 1):
        for b in range(d + 1 - a):
            c = d - a - b
            atoms[b - a] = atoms.get(b - a, 0) + mp.binomial(d, a) * mp.binomial(d - a, b) * keep**a * one**b * (other**c if c else 1)
    r, s, target = mp.mpf(r), mp.mpf(sigma), mp.mpf(p_a)

    def F(u):
        return sum(m * mp.ncdf((r * r / 2 + s * s * (u - k * log_rho)) / (s * r)) for k, m in atoms.items()) - target

    lo, hi = mp.mpf(-400), mp.mpf(400)
    for _ in range(300):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if F(mid) < 0 else (lo, mid)
    return sum(atoms[-k] * mp.ncdf((r * r / 2 + s * s * (lo - k * log_rho)) / (s * r) - r / s) for k in atoms)


@pytest.mark.parametrize("p_a", [1 - 3e-12, 1 - 5e-9, 0.999])
@pytest.mark.parametrize("tau", [0.5, TAU_FLOOR])
def test_max_radius_is_exact_and_on_the_certified_side_near_one(p_a, tau):
    beta, vocab, sigma, d = 0.9, 256, 1.0, 3
    r = float(bounds.max_radius(p_a, Gaussian(sigma), UniformReplace(beta, vocab), d, tau))
    assert math.isfinite(r) and r > 0
    excess = _mp_p_adv(p_a, sigma, r, beta, vocab, d) - tau
    assert -1e-13 <= float(excess) <= 1e-9


# ---------------------------------------------------------------- numerical safety


@pytest.mark.parametrize("sigma", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("text", [UniformReplace(0.25, 2**20), UniformReplace(0.1, 2), Mask(0.9), UniformReplace(0.95, 50)])
@pytest.mark.parametrize("tau", [0.5, TAU_FLOOR])
def test_no_nan_and_every_radius_certifies(sigma, text, tau):
    p = np.array([0.0, 1e-12, 0.3, 0.5, 0.5 + 1e-12, 0.9, 0.999, 1 - 1e-9, 1 - 1e-12, 1.0])
    radii = bounds.frontier(p, Gaussian(sigma), text, 8, tau)
    assert not np.isnan(radii).any()
    assert np.all(radii[..., 1:] <= radii[..., :-1])
    d = np.broadcast_to(np.arange(9), radii.shape)
    pp = np.broadcast_to(p[:, None], radii.shape)
    fin = np.isfinite(radii)
    p_adv = bounds.worst_case(pp[fin], Gaussian(sigma), radii[fin], text, d[fin])
    assert not np.isnan(p_adv).any()
    assert np.all(p_adv >= tau - 1e-12)
    # just beyond the radius it no longer certifies
    beyond = bounds.worst_case(pp[fin], Gaussian(sigma), radii[fin] * (1 + 1e-6) + 1e-9, text, d[fin])
    assert np.all(beyond <= tau + 1e-9)


def test_gamma_zero_and_infinite_atoms_and_degenerate_p():
    image, text = Gaussian(0.5), Mask(0.5)
    assert bounds.worst_case(0.2, image, 0.3, text, 2) == 0.0  # all clean mass sits on gamma = 0
    assert bounds.worst_case(1.0, image, 5.0, text, 2) == pytest.approx(0.25)
    assert bounds.max_radius(1.0, image, text, 2, threshold=0.2) == math.inf
    assert bounds.max_radius(1.0, image, text, 2, threshold=0.3) == -math.inf
    assert bounds.required_p_a(image, 0.3, text, 2, threshold=0.3) == math.inf
    assert bounds.max_radius(0.5, image) == -math.inf  # a tie is not a strict majority
    assert bounds.max_radius(0.3, image, threshold=0.3) == 0.0


def test_max_edits():
    text = UniformReplace(0.2, 2)
    # Lee thresholds 0.875, 0.96875, 0.9921875 (d = 1, 2, 3) and 0.99275 (d = 4)
    assert bounds.max_edits([0.4, 0.6, 0.9, 0.97, 0.9925, 0.995], text=text).tolist() == [-1, 0, 1, 2, 3, 4]
    hybrid = bounds.max_edits(0.99, Gaussian(0.5), 0.25, text)
    assert bounds.worst_case(0.99, Gaussian(0.5), 0.25, text, hybrid) > 0.5
    assert bounds.worst_case(0.99, Gaussian(0.5), 0.25, text, hybrid + 1) <= 0.5


# ---------------------------------------------------------------- properties


kernels = st.one_of(
    st.builds(UniformReplace, st.floats(0.01, 0.99), st.integers(2, 2**20)),
    st.builds(Mask, st.floats(0.01, 0.99)),
)


@settings(max_examples=150, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    dp=st.floats(0.0, 0.2),
    sigma=st.floats(1e-3, 1e3),
    r=st.floats(0.0, 5.0),
    dr=st.floats(0.0, 1.0),
    d=st.integers(0, 8),
    text=kernels,
)
def test_worst_case_is_a_monotone_probability(p, dp, sigma, r, dr, d, text):
    image = Gaussian(sigma)
    r, dr = r * sigma, dr * sigma
    base = bounds.worst_case(p, image, r, text, d)
    assert 0.0 <= base <= 1.0
    assert bounds.worst_case(min(1.0, p + dp), image, r, text, d) >= base - 1e-9
    assert bounds.worst_case(p, image, r + dr, text, d) <= base + 1e-9
    assert bounds.worst_case(p, image, r, text, d + 1) <= base + 1e-9


@settings(max_examples=100, deadline=None)
@given(sigma=st.floats(1e-2, 1e2), r=st.floats(0.0, 3.0), d=st.integers(0, 6), text=kernels, tau=st.sampled_from([0.5, 0.2, TAU_FLOOR]))
def test_required_p_a_inverts_worst_case(sigma, r, d, text, tau):
    image = Gaussian(sigma)
    r = r * sigma
    p_star = bounds.required_p_a(image, r, text, d, tau)
    if math.isinf(p_star):
        assert bounds.worst_case(1.0, image, r, text, d) <= tau + 1e-12
        return
    assert 0.0 <= p_star <= 1.0
    # p* is the boundary: just above it the worst case reaches tau, just below it does not. (The round
    # trip itself is ill-conditioned: d p_adv / d p_a is the likelihood ratio of an atom, up to rho ** d.)
    assert bounds.worst_case(min(1.0, p_star + 1e-9), image, r, text, d) >= tau - 1e-12
    assert bounds.worst_case(max(0.0, p_star - 1e-9), image, r, text, d) <= tau + 1e-12


@settings(max_examples=60, deadline=None)
@given(p=st.floats(0.5, 1.0), sigma=st.floats(1e-2, 1e2), text=kernels, tau=st.sampled_from([0.5, TAU_FLOOR]))
def test_frontier_is_non_increasing_in_edits(p, sigma, text, tau):
    radii = bounds.frontier(p, Gaussian(sigma), text, 6, tau)
    assert not np.isnan(radii).any()
    assert np.all(radii[1:] <= radii[:-1])


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bounds.worst_case(1.2, Gaussian(0.5), 0.1), "p_a"),
        (lambda: bounds.worst_case(float("nan"), Gaussian(0.5), 0.1), "p_a"),
        (lambda: bounds.worst_case(0.9, Gaussian(0.5), -0.1), "radius"),
        (lambda: bounds.worst_case(0.9, None, 0.1), "image kernel"),
        (lambda: bounds.worst_case(0.9, Gaussian(0.5), 0.1, None, 2), "text kernel"),
        (lambda: bounds.worst_case(0.9, Gaussian(0.5), 0.1, Mask(0.5), 1.5), "edits"),
        (lambda: bounds.max_radius(0.9, Gaussian(0.5), threshold=1.0), "threshold"),
        (lambda: bounds.max_radius(0.9, Gaussian(0.5), threshold=0.0), "threshold"),
        (lambda: bounds.frontier(0.9, Gaussian(0.5), None, 3), "text kernel"),
        (lambda: bounds.max_edits(0.9, Gaussian(0.5), 0.1), "text kernel"),
    ],
)
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wrong_kernel_types():
    with pytest.raises(TypeError, match="Gaussian"):
        bounds.max_radius(0.9, 0.5)
    with pytest.raises(TypeError, match="text"):
        bounds.worst_case(0.9, Gaussian(0.5), 0.1, Gaussian(0.5), 1)


def test_max_radius_is_tight_when_the_root_lands_exactly_on_tau():
    """Regression: Newton converged onto p_adv == tau and the confirming step fell back to an earlier iterate."""
    p, d, tau = 0.9880089320322857, 3, TAU_FLOOR
    got = bounds.max_radius(p, Gaussian(0.5), UniformReplace(0.25, 32_000), d, tau)
    assert got == pytest.approx(reference.max_radius(p, 0.5, 0.25, 32_000, d, tau), abs=1e-9)


def test_a_sure_outcome_stays_sure_at_every_image_radius():
    """p_A = 1 under Gaussian noise: every shifted Gaussian charges only sets the centred one charges, so the worst case
    is 1 at any radius, an infinite one included (Cohen's formula alone gives inf - inf there)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = bounds.worst_case([1.0, 1.0, 0.0], Gaussian(0.5), radius=[math.inf, 1e6, math.inf])
    assert values.tolist() == [1.0, 1.0, 0.0]
