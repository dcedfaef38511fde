"""The verdict at the boundary, decided without rounding (certkit/boundary.py, Smoothed._required, the sequential test's
bar): at the exact boundary and one ulp on each side, for Cohen (d = 0), the text-only knapsack and the hybrid, every
decision is the one exact arithmetic gives, checked against an independent 60-digit mpmath computation."""

import math
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest

from certkit import bounds
from certkit.boundary import boundary
from certkit.noise import Gaussian, Mask, UniformReplace
from certkit.oracles import LabelOracle
from certkit.sequential import MixtureTest
from certkit.stats import Decision, adjust_for_oracle_error
from tests.brightness import brightness_model

mp.mp.dps = 60


def _neighbours(x: float):
    return math.nextafter(x, 0.0), x, math.nextafter(x, 2.0)


# ---------------------------------------------------------------- independent exact worst cases (60 digits)


def _cohen_p_adv(p, sigma, radius):
    return mp.ncdf(mp.sqrt(2) * mp.erfinv(2 * mp.mpf(p) - 1) - mp.mpf(radius) / mp.mpf(sigma))


def _uniform_atoms(beta, v, d):
    """(k, clean, adversarial) of UniformReplace at d edits, from the multinomial in mpmath (gamma = rho^k)."""
    beta = mp.mpf(beta)
    keep, one, other = 1 - beta, beta / (v - 1), beta * (v - 2) / (v - 1)
    clean = {}
    for a in range(d + 1):
        for b in range(d - a + 1):
            c = d - a - b
            ways = mp.factorial(d) / (mp.factorial(a) * mp.factorial(b) * mp.factorial(c))
            clean[b - a] = clean.get(b - a, 0) + ways * keep**a * one**b * other**c
    return [(k, clean[k], clean.get(-k, mp.mpf(0))) for k in sorted(clean)]  # rho > 1 in every use here


def _knapsack_p_adv(p, atoms):
    left, out = mp.mpf(p), mp.mpf(0)
    for _, clean, adv in atoms:
        take = min(left, clean)
        out += adv * take / clean
        left -= take
    return out


def _hybrid_p_adv(p, sigma, radius, beta, v, d):
    atoms = _uniform_atoms(beta, v, d)
    rho = (1 - mp.mpf(beta)) * (v - 1) / mp.mpf(beta)
    s, r = mp.mpf(sigma), mp.mpf(radius)

    def f(u):
        return mp.fsum(c * mp.ncdf(r / (2 * s) + s * (u - k * mp.log(rho)) / r) for k, c, _ in atoms) - mp.mpf(p)

    span = (d + 5) * abs(mp.log(rho)) + 60 * r / s
    lo, hi = -span, span  # f(lo) < 0 < f(hi); plain bisection to 2^-230 of the span
    for _ in range(240):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    u = (lo + hi) / 2
    return mp.fsum(q * mp.ncdf(-r / (2 * s) + s * (u - k * mp.log(rho)) / r) for k, _, q in atoms)


def _above(exact_p_adv, tau):
    return exact_p_adv > tau if tau == 0.5 else exact_p_adv >= tau


# ---------------------------------------------------------------- the three boundaries, one ulp each side


@pytest.mark.parametrize("sigma, radius", [(0.25, 0.25), (0.5, 0.9751555642779303), (1.0, 1.1421577302660524), (0.5, 0.6196545934497847)])
def test_cohen_decided_exactly_at_the_boundary_and_one_ulp_each_side(sigma, radius):
    b = boundary(Gaussian(sigma), radius, None, 0, 0.5)
    nearest = float(b.high)
    for x in (*_neighbours(math.nextafter(nearest, 0.0)), math.nextafter(nearest, 2.0)):
        exact = _cohen_p_adv(x, sigma, radius)
        assert b.clears(x) == _above(exact, 0.5), (x, mp.nstr(exact - 0.5, 5))
        assert (b.margin(x) > 0) == b.clears(x)


def test_the_old_double_rule_certified_below_one_half_and_the_engine_no_longer_does():
    """Defect: the smallest p_A whose *double* worst case is > 1/2 had an exact worst case below 1/2 (here by
    5.4e-17). The engine's p* now clears the exact boundary."""
    sigma, radius = 0.5, 0.9751555642779303
    old = float(bounds.required_p_a(Gaussian(sigma), radius))
    while not bounds.is_certified(bounds.worst_case(old, Gaussian(sigma), radius)):
        old = math.nextafter(old, 2.0)
    assert _cohen_p_adv(old, sigma, radius) < 0.5  # what the double rule certified at
    s = __import__("certkit").Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(sigma))
    p_star, p_test = s._required(radius, 0, 0.5)
    assert _cohen_p_adv(p_star, sigma, radius) > 0.5
    assert not boundary(Gaussian(sigma), radius, None, 0, 0.5).clears(math.nextafter(p_star, 0.0))  # and it is the smallest


@pytest.mark.parametrize("v, d, tie", [(3, 1, 0.75), (3, 2, 13 / 16), (5, 3, 245 / 256), (9, 4, 65283 / 65536)])
def test_knapsack_exact_tie_is_not_a_strict_majority(v, d, tie):
    """UniformReplace(1/2, v): every mass is a binary fraction, and these boundaries are doubles whose exact worst case
    is 1/2: not certified at tau = 1/2 (strict), certified one ulp above; at tau = 0.3 the tie certifies."""
    text = UniformReplace(0.5, v)
    b = boundary(None, 0.0, text, d, 0.5)
    assert b.low == b.high == Fraction(tie)
    atoms = _uniform_atoms(0.5, v, d)
    below, at, above = _neighbours(tie)
    assert _knapsack_p_adv(at, atoms) == mp.mpf(0.5)
    assert [b.clears(x) for x in (below, at, above)] == [False, False, True]
    assert [_above(_knapsack_p_adv(x, atoms), 0.5) for x in (below, at, above)] == [False, False, True]
    assert b.margin(at) == 0.0 and b.margin(above) > 0
    # a non-strict threshold: the exact boundary itself certifies
    tau = 0.3
    b3 = boundary(None, 0.0, text, d, tau)
    x = float(b3.high)
    for y in _neighbours(x):
        assert b3.clears(y) == _above(_knapsack_p_adv(y, atoms), tau) == (Fraction(y) >= b3.high)


@pytest.mark.parametrize("beta, v, d", [(0.25, 32_000, 1), (0.1, 1_000, 2), (0.25, 28, 3)])
def test_knapsack_decided_exactly_one_ulp_each_side(beta, v, d):
    text = UniformReplace(beta, v)
    b = boundary(None, 0.0, text, d, 0.5)
    atoms = _uniform_atoms(beta, v, d)
    nearest = float(b.high)
    for x in (math.nextafter(nearest, 0.0), nearest, math.nextafter(nearest, 2.0)):
        assert b.clears(x) == _above(_knapsack_p_adv(x, atoms), 0.5), x


@pytest.mark.parametrize("sigma, radius, beta, v, d, tau", [(0.25, 0.1, 0.1, 1_000, 1, 0.5), (0.5, 0.25, 0.25, 32_000, 1, 4.6e-5),
                                                             (0.5, 0.3, 0.2, 28, 2, 0.5)])
def test_hybrid_decided_exactly_one_ulp_each_side(sigma, radius, beta, v, d, tau):
    text = UniformReplace(beta, v)
    b = boundary(Gaussian(sigma), radius, text, d, tau)
    nearest = float(b.high)
    for x in (math.nextafter(nearest, 0.0), nearest, math.nextafter(nearest, 2.0)):
        exact = _hybrid_p_adv(x, sigma, radius, beta, v, d)
        assert b.clears(x) == _above(exact, tau), (x, mp.nstr(exact - tau, 5))
    assert b.high - b.low < Fraction(1, 2**180)  # the enclosure is far narrower than an ulp


def test_mask_and_unreachable_boundaries():
    b = boundary(Gaussian(0.5), 0.25, Mask(0.7), 1, 0.3)
    assert b.reachable and abs(float(b.high) - bounds.required_p_a(Gaussian(0.5), 0.25, Mask(0.7), 1, 0.3)) < 1e-15
    far = boundary(Gaussian(0.5), 0.25, Mask(0.2), 3, 0.5)  # 0.2^3 of the adversarial mass is finite: 1/2 is out of reach
    assert not far.reachable and not far.clears(1.0) and far.margin(1.0) is None
    assert not boundary(Gaussian(0.5), math.inf, UniformReplace(0.2, 2), 1, 0.5).reachable


def test_engine_p_star_is_the_smallest_double_that_clears_for_every_kind():
    s = __import__("certkit").Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(0.25),
                                       text=UniformReplace(0.2, 28))
    image, text = Gaussian(0.25), UniformReplace(0.2, 28)
    for radius, edits, tau in [(0.25, 0, 0.5), (0.0, 1, 0.5), (0.1, 1, 0.5), (0.1, 2, 4.6e-5)]:
        p_star, _ = s._required(radius, edits, tau)
        b = boundary(image, radius, text, edits, tau)

        def meets(p):
            return b.clears(p) and bounds.is_certified(bounds.worst_case(p, image, radius, text, edits), tau)

        assert meets(p_star) and not meets(math.nextafter(p_star, 0.0))


# ---------------------------------------------------------------- the oracle error and the sequential test


def test_oracle_error_is_subtracted_rounding_down():
    """Defect: fl(p - e) can exceed the exact difference (a lower bound rounded up). Now never above, and tight."""
    rng = np.random.default_rng(3)
    p, e = rng.random(20_000), rng.random(20_000) * 0.1
    rounded_up = sum(Fraction(float(a) - float(b)) > Fraction(float(a)) - Fraction(float(b)) for a, b in zip(p, e))
    assert rounded_up > 1000  # the plain subtraction rounds up about half the time
    out = adjust_for_oracle_error(p, 0.0)
    assert np.array_equal(out, p)
    for a, b in zip(p[:3000], e[:3000]):
        got, exact = adjust_for_oracle_error(float(a), float(b)), Fraction(float(a)) - Fraction(float(b))
        assert Fraction(got) <= max(exact, 0) < Fraction(math.nextafter(got, 2.0)) or got == 0.0


def _exact_evidence(test, k, n):
    """The certify mixture's log evidence in 60-digit mpmath, from the same double-valued prior parameters."""
    q = mp.mpf(test.p_star)
    hi = mp.mpf(min(1.0, test.p_star + test.width))
    null = q**k * (1 - q) ** (n - k)
    from certkit.sequential import W_FAR
    up = (1 - mp.mpf(W_FAR)) * mp.betainc(k + 1, n - k + 1, q, hi) / (hi - q) + mp.mpf(W_FAR) * mp.betainc(k + 1, n - k + 1, q, 1) / (1 - q)
    point = mp.mpf(test.w_one) / q**n if k == n else 0
    return mp.log((1 - mp.mpf(test.w_one)) * up / null + point)


def test_sequential_bar_covers_the_evidence_rounding():
    for p_star, k, n in [(0.8413447460685434, 54, 55), (0.69, 800, 1000), (0.98, 300, 300), (0.5, 1200, 2000)]:
        test = MixtureTest(p_star, 0.01, 5000)
        cert, _ = test.evidence(k, n)
        err = abs(float(cert) - float(_exact_evidence(test, k, n)))
        assert err < (test.bar(k, n) - test.threshold) / 1000, (p_star, k, n, err)


@pytest.mark.parametrize("p_star, k, n", [(0.8413447460685434, 54, 55), (0.69, 800, 1000)])
def test_sequential_stop_at_the_bar_and_one_ulp_each_side(p_star, k, n):
    """alpha chosen so that log(1/alpha) equals the double evidence: a tie only rounding could settle. At it and one
    ulp of alpha on each side the test does not certify; it certifies once the evidence clears the raised bar, and
    then the exact evidence is above log(1/alpha)."""
    cert = float(MixtureTest(p_star, 0.01, 5000).evidence(k, n)[0])
    tie = math.exp(-cert)
    for alpha in _neighbours(tie):
        test = MixtureTest(p_star, alpha, 5000)
        assert test.decide(k, n) is not Decision.CERTIFIED
        assert test.first_decision(np.ones(0, bool), k, n)[2] is Decision.CONTINUE
    room = float(MixtureTest(p_star, tie, 5000).bar(k, n)) - math.log(1 / tie)
    clear = math.exp(-(cert - 2 * room))
    test = MixtureTest(p_star, clear, 5000)
    assert test.decide(k, n) is Decision.CERTIFIED
    assert _exact_evidence(test, k, n) >= mp.log(1 / mp.mpf(clear))
    # the bounds at the stop agree with the decision: a certified test's lower bound is at least p*
    assert test.bounds(k, n)[0] >= p_star
