"""Where a requirement's verdict flips, decided without rounding: the boundary ``p*`` in exact or high-precision arithmetic.

:mod:`certkit.bounds` computes ``p*`` and ``p_adv`` in double precision. At the boundary (a lower bound on p_A equal
to ``p*``) a verdict would then rest on the last bits of ``Phi`` and ``Phi^-1``: the demo audit once certified four
requirements whose ``p_adv`` was ``0.5000000000000006``, at the majority threshold where the promise is *strictly*
above 1/2. This module decides the one comparison a verdict rests on, so that a certified requirement holds in exact
arithmetic, whatever the rounding:

* no radius and no edits: ``p* = tau`` (exact);
* image only (Cohen et al. 2019): ``p* = Phi(Phi^-1(tau) + eps / sigma)``, in mpmath at :data:`PRECISION` bits;
* text only (the knapsack): the kernel's atoms as exact rationals (``beta`` is a binary fraction, so every mass is a
  polynomial in it with integer coefficients), and ``p*`` the fill's inverse in Python integers, exactly;
* hybrid: ``V(u_tau) = tau`` bracketed in mpmath at :data:`PRECISION` bits, ``p* = F(u_tau)`` (``F`` and ``V`` as in
  :class:`certkit.bounds.hybrid.Hybrid`, with the exact atoms).

Each ``p*`` is an enclosure ``[low, high]`` of exact rationals (``low == high`` where computed exactly). mpmath is not
interval arithmetic, but it evaluates ``Phi`` within a few ulps of its working precision (2^-256 relative); the
enclosures are widened by :data:`WIDEN` (2^-200 relative), about 2^50 times that error. A lower bound ``p`` (a double,
read exactly) *clears* the requirement iff ``p >= high`` (for ``tau = 1/2``: ``p > high``, and ``p >= high`` only when
``high`` is strictly above the exact ``p*``, i.e. a widened enclosure).

Proof that a cleared requirement holds (``tau = 1/2``: strictly). ``p_adv(p)`` is non-decreasing in ``p`` (Cohen and
hybrid: strictly increasing, ``Phi`` is) and ``p_adv(p*) = tau`` by the definition of ``p*``. For an exact enclosure,
``p > p*`` gives ``p_adv(p) > tau`` (the knapsack's ``p*`` for ``tau = 1/2`` is the *last* clean mass whose fill holds
at most ``tau``, so any larger mass holds more) and ``p >= p*`` gives ``p_adv(p) >= tau``. For a widened one,
``p >= high > p*`` and ``p_adv`` is strictly increasing there, so ``p_adv(p) > tau``. No double-precision value enters
the decision except ``p`` itself, read exactly.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np
from scipy.special import ndtri

from . import bounds
from .bounds.hybrid import Hybrid
from .noise import Gaussian, Mask, UniformReplace

__all__ = ["Boundary", "boundary", "PRECISION", "WIDEN"]

#: mpmath's working precision, in bits, for the Cohen and hybrid boundaries
PRECISION = 256
#: the relative widening of a high-precision enclosure (2^-200: 2^50 times mpmath's evaluation error at 256 bits)
WIDEN = Fraction(1, 2**200)


def _fraction(x) -> Fraction:
    """An mpf, exactly, as a Fraction."""
    man, exp = mpmath.mpf(x).man_exp
    return Fraction(int(man) * 2**exp) if exp >= 0 else Fraction(int(man), 2 ** (-exp))


@dataclass(frozen=True)
class Boundary:
    """The clean probability ``p*`` at which a requirement's verdict flips, enclosed: ``low <= p* <= high`` (exact
    rationals; ``low == high`` where computed exactly; both None where no ``p_A <= 1`` meets it). ``strict`` is the
    majority rule (``tau = 1/2``: the worst case must be strictly above it)."""

    low: Fraction | None
    high: Fraction | None
    strict: bool

    @property
    def reachable(self) -> bool:
        """False where no clean probability in [0, 1] meets the requirement."""
        return self.high is not None and self.high <= 1

    def clears(self, p: float) -> bool:
        """True iff a lower bound ``p`` on p_A (a float, read exactly) proves the requirement in exact arithmetic:
        ``p_adv(p) >= tau``, strictly ``>`` for ``tau = 1/2`` (the module docstring's proof). False where not
        reachable, and where ``p`` falls inside the enclosure (undecidable at this precision: not proven)."""
        if not self.reachable or not math.isfinite(p):
            return False
        x = Fraction(p)
        exact = self.low == self.high
        return x > self.high if (self.strict and exact) else x >= self.high

    def margin(self, p: float) -> float | None:
        """``p - p*`` in exact arithmetic, rounded to a float once (the midpoint of a widened enclosure for ``p*``):
        positive for every ``p`` that :meth:`clears` (its sign is the verdict's, never rounding's). None where not
        reachable."""
        if not self.reachable:
            return None
        diff = Fraction(p) - (self.low + self.high) / 2
        value = float(diff)
        if value == 0.0 and diff != 0:  # keep the sign of a difference below the smallest double
            value = math.copysign(5e-324, diff)
        return value


# --------------------------------------------------------------------------- exact atoms


def _exact_atoms(text, d: int):
    """The text kernel's atoms at ``d`` edits as exact rationals, in ascending likelihood ratio:
    ``[(log_gamma_key, clean, adversarial), ...]`` where ``log_gamma_key`` is ``-inf``, ``+inf`` or the integer
    ``k`` with ``gamma = rho^k`` (for :class:`Mask`, ``0``); also ``rho`` (None for Mask)."""
    if isinstance(text, Mask):
        b = Fraction(text.beta) ** d
        return [(-math.inf, 1 - b, Fraction(0)), (0, b, b), (math.inf, Fraction(0), 1 - b)], None
    beta, v = Fraction(text.beta), text.vocab_size
    rho = (1 - beta) * (v - 1) / beta
    if rho == 1:
        return [(0, Fraction(1), Fraction(1))], rho
    # every mass over the common denominator (D (v - 1))^d: integers only (Fraction's gcd per term is far slower)
    n_, den = beta.numerator, beta.denominator
    keep, one, other = (den - n_) * (v - 1), n_, n_ * (v - 2)
    total = (den * (v - 1)) ** d
    clean = {}
    for a in range(d + 1):
        for b in range(d - a + 1):
            c = d - a - b
            term = math.comb(d, a) * math.comb(d - a, b) * keep**a * one**b * other**c
            if term:
                clean[b - a] = clean.get(b - a, 0) + term
    atoms = [(k, Fraction(m, total), Fraction(clean.get(-k, 0), total)) for k, m in clean.items()]
    atoms.sort(key=lambda t: t[0] if rho > 1 else -t[0])  # ascending gamma = rho^k
    return atoms, rho


# --------------------------------------------------------------------------- the three boundaries


def _knapsack(atoms, tau: Fraction, strict: bool):
    """The text-only ``p*``: the first clean mass whose fill (ascending gamma, clean mass only buys atoms that have
    some) holds adversarial mass ``tau``; with ``strict``, the last one that holds at most ``tau``. None if none."""
    before_clean = before_adv = Fraction(0)
    for _, clean, adv in atoms:
        if clean == 0:
            continue
        after = before_adv + adv
        if (after > tau) if strict else (after >= tau and adv > 0):
            return before_clean + (tau - before_adv) / adv * clean
        before_clean, before_adv = before_clean + clean, after
    return None


def _probit(tau: float):
    """``Phi^-1(tau)`` in mpmath at the working precision: Newton from the double estimate (quadratic: 53 bits to
    over 256 in four steps; eight are run)."""
    if tau == 0.5:
        return mpmath.mpf(0)
    t = mpmath.mpf(tau)
    z = mpmath.mpf(float(ndtri(tau)))
    for _ in range(8):
        z -= (mpmath.ncdf(z) - t) / mpmath.npdf(z)
    return z


def _widened(value) -> tuple[Fraction, Fraction]:
    x = _fraction(value)
    return x * (1 - WIDEN), x * (1 + WIDEN)


def _cohen(sigma: float, radius: float, tau: float):
    z = _probit(tau) + mpmath.mpf(radius) / mpmath.mpf(sigma)
    return _widened(mpmath.ncdf(z))


def _hybrid(sigma: float, radius: float, text, d: int, tau: float):
    """The hybrid ``p*`` enclosed: ``u_tau`` bracketed by ``V(u_lo) < tau < V(u_hi)`` (each checked with room for
    the evaluation error), then ``[F(u_lo), F(u_hi)]`` widened. None where ``tau`` is at least the finite atoms'
    adversarial mass (no region reaches it)."""
    atoms, rho = _exact_atoms(text, d)
    mp = mpmath.mp
    log_rho = mpmath.log(mpmath.mpf(rho.numerator) / rho.denominator) if rho is not None else mpmath.mpf(0)
    finite = [(mpmath.mpf(k) * log_rho, mpmath.mpf(c.numerator) / c.denominator, mpmath.mpf(a.numerator) / a.denominator)
              for k, c, a in atoms if not math.isinf(k)]
    below = sum((c for k, c, _ in atoms if k == -math.inf), Fraction(0))
    q_finite = sum((a for k, _, a in atoms if not math.isinf(k)), Fraction(0))
    t = Fraction(tau)
    if t >= q_finite:
        return None
    s, r = mpmath.mpf(sigma), mpmath.mpf(radius)
    half = r / (2 * s)

    def f(u):
        return mpmath.mpf(below.numerator) / below.denominator + mp.fsum(p * mpmath.ncdf(half + s * (u - lg) / r) for lg, p, _ in finite)

    def v(u):
        return mp.fsum(q * mpmath.ncdf(-half + s * (u - lg) / r) for lg, _, q in finite)

    def dv(u):
        return mp.fsum(q * mpmath.npdf(-half + s * (u - lg) / r) for lg, _, q in finite) * s / r

    # Newton from the double-precision root (quadratic: 53 bits to over 256 in three steps), then the narrowest
    # bracket around it whose two ends are checked, with room for the evaluation error, to lie on either side
    u0, _ = Hybrid(sigma, text.atoms(d)).solve(np.array([float(tau)]), np.array([float(radius)]), -1)
    u = mpmath.mpf(float(u0[0])) if np.isfinite(u0[0]) else mpmath.mpf(0)
    tau_m = mpmath.mpf(tau)
    scale, room = r / s, mpmath.mpf(2) ** -230
    for _ in range(8):
        slope = dv(u)
        if not slope > 0:
            break
        step = (v(u) - tau_m) / slope
        u -= step
        if abs(step) < scale * mpmath.mpf(2) ** -200:  # the next step would be below 2^-300: converged
            break
    h = scale * mpmath.mpf(2) ** -220
    while not (v(u - h) < tau_m * (1 - room) and v(u + h) > tau_m * (1 + room)):
        h *= 16
        if h > scale * 2**40:
            raise ArithmeticError("the hybrid boundary's root could not be bracketed")
    lo, hi = u - h, u + h
    return _fraction(f(lo)) * (1 - WIDEN), _fraction(f(hi)) * (1 + WIDEN)


@functools.lru_cache(maxsize=256)
def boundary(image: Gaussian | None, radius: float, text, edits: int, threshold: float) -> Boundary:
    """The :class:`Boundary` of the requirement ``(edits, radius, threshold)`` under the kernels ``image`` and ``text``:
    the clean probability at which its verdict flips, enclosed in exact rationals (the module docstring says how,
    and why a lower bound that :meth:`Boundary.clears` proves the requirement in exact arithmetic). Unreachable
    (``low`` and ``high`` None) for an infinite radius with edits, or a threshold above the reachable mass. Raises
    as :func:`certkit.bounds.required_p_a` does for bad arguments."""
    bounds.required_p_a(image, radius, text, edits, threshold)  # the same checks and messages
    tau, radius, d = float(threshold), float(radius), int(edits)
    strict = tau == 0.5
    t = Fraction(tau)
    if math.isinf(radius):
        return Boundary(None, None, strict)
    with mpmath.workprec(PRECISION):
        if d == 0:
            if radius == 0:
                return Boundary(t, t, strict)
            low, high = _cohen(image.sigma, radius, tau)
            return Boundary(low, high, strict)
        if radius == 0:
            atoms, _ = _exact_atoms(text, d)
            p = _knapsack(atoms, t, strict)
            return Boundary(p, p, strict)
        if not isinstance(text, (UniformReplace, Mask)):
            raise TypeError(f"text must be a certkit.noise.UniformReplace or Mask, got {type(text).__name__}")
        enclosure = _hybrid(image.sigma, radius, text, d, tau)
    if enclosure is None:
        return Boundary(None, None, strict)
    return Boundary(*enclosure, strict)
