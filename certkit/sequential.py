"""The anytime-valid test certify mode runs: mixture likelihood ratios, looked at after every sample.

To decide ``H0: p_A <= p*`` (certify when rejected) and ``H0': p_A >= p*`` (not certified when rejected), two
mixtures of likelihood ratios against the null ``p*`` are tracked after every sample:

* for certifying, a prior with mass ``w_one`` on ``p = 1`` (every sample agrees: the common case in
  certification, decided near the information limit), the rest uniform on ``(p*, p* + width]`` (share
  ``1 - W_FAR``) and on ``(p*, 1]`` (share ``W_FAR``);
* for not certifying, a prior uniform on ``[p* - width, p*)`` (share ``1 - W_FAR``) and on ``[0, p*)``.

For every ``q >= p*`` the likelihood ratio ``(q/p*)^k ((1-q)/(1-p*))^(n-k)`` is a nonnegative supermartingale
whenever the true ``p_A <= p*`` (its expected factor per sample is ``p_A q/p* + (1-p_A)(1-q)/(1-p*) <= 1``), and so
is any mixture of them. Ville's inequality then bounds the chance that it *ever* reaches ``1/alpha`` by ``alpha``:

    Guarantee: whatever the stopping time (a look after every sample, stopping at the first crossing, any
    ``n_max``), P[certified] <= alpha if p_A <= p*, and P[not certified] <= alpha if p_A >= p*.

The evidence is computed from the regularized incomplete beta function on its small tail (no cancellation);
where the mixture's mass underflows double precision the evidence is taken as none, which can only lower the
process and so keeps the guarantee. ``tests/test_sequential.py`` checks the error rates by exact computation
over every sample path and by simulation; ``bench/bench_efficiency.py`` measures samples against the
information limit ``log(1/alpha) / KL(p_A || p*)``.

Crossings are rounded outward: the evidence, computed in double precision, must reach ``log(1/alpha)`` plus
:meth:`MixtureTest.bar`'s room for its rounding error, ``2^-30 (700 + log(1/alpha) + |log L(q)| + |betaln(k+1, n-k+1)|)``
with ``log L(q) = k log q + (n-k) log(1-q)`` the null's log-likelihood. The evidence is a sum of terms of magnitude at
most that scale (the null, ``betaln`` and the log-masses, which lie between ``log(1e-280) > -645`` and 0), each formed
in a few double operations (relative error 2^-53 each) and from
``betainc``/``betaincc`` (Boost's ibeta, accurate to far better than 2^-30 relative: ``tests/test_sequential.py``
checks the evidence against mpmath), so the room is millions of times the error: a crossing of the raised bar is a
crossing of ``log(1/alpha)`` in exact arithmetic, and Ville's inequality applies to the exact process. A crossing
that only rounding could make is no crossing.

The bounds reported at the stop (:meth:`MixtureTest.bounds`) come from the same mixtures with the null moved
along a grid: a one-sided confidence sequence, valid at the stopping time at level ``1 - alpha`` each.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, betaincc, betaln

from .stats import Decision, _check_alpha

__all__ = ["MixtureTest", "W_ONE", "WIDTH", "W_FAR"]

#: the certify prior's mass on p = 1 (all samples agree)
W_ONE = 0.3
#: the width of each prior's uniform part next to p*
WIDTH = 0.2
#: the share of each uniform part spread over the whole side ((p*, 1] or [0, p*)), so far-off nulls are rejected too
W_FAR = 0.2
#: a mixture mass below this is taken as zero (only ever lowers the evidence)
_TINY = 1e-280
_GRID = 2048
#: the room for rounding, per unit of the evidence's scale (module docstring)
_ROOM = 2.0**-30


def _log_mass(k, n, a, b):
    """log of ``int_a^b p^k (1-p)^(n-k) dp``, from the incomplete beta's smaller tail; ``-inf`` where it underflows."""
    k, n, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (k, n, a, b)))
    x, y = k + 1.0, n - k + 1.0
    mass = np.empty(k.shape)
    upper = k / np.maximum(n, 1.0) <= 0.5 * (a + b)  # the mass lies above a: difference of upper tails, else of lower ones
    if upper.any():
        xu, yu = x[upper], y[upper]
        mass[upper] = betaincc(xu, yu, a[upper]) - np.where(b[upper] >= 1.0, 0.0, betaincc(xu, yu, np.minimum(b[upper], 1.0)))
    lower = ~upper
    if lower.any():
        xl, yl = x[lower], y[lower]
        mass[lower] = np.where(b[lower] >= 1.0, 1.0, betainc(xl, yl, np.minimum(b[lower], 1.0))) - np.where(
            a[lower] <= 0.0, 0.0, betainc(xl, yl, np.maximum(a[lower], 0.0)))
    with np.errstate(divide="ignore"):
        return np.where(mass > _TINY, betaln(x, y) + np.log(np.maximum(mass, _TINY)), -np.inf)


@functools.lru_cache(maxsize=64)
def _boundaries(p_star: float, alpha: float, n_max: int, w_one: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The two boundaries for n = 1..n_max by bisection on k, every n at once. They do not depend on n_max (only
    their length does), so a shorter call gives a prefix of a longer one. The brackets use that no certify evidence
    exists at k <= p* n and no not-certify evidence at k >= p* n: there every likelihood ratio in the mixture is at
    most 1 (its maximum over q lies at k / n, on the other side of p*), so the mixture is below 1 < 1 / alpha."""
    test = MixtureTest(p_star, alpha, n_max, w_one, width)
    n = np.arange(1, n_max + 1)
    pivot = np.floor(p_star * n).astype(np.int64)
    lo, hi = pivot, n + 1  # certify boundary in [lo, hi]; hi = n + 1 means never
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = test.evidence(np.minimum(mid, n), n, sides="certify")[0] >= test.bar(np.minimum(mid, n), n)
        ok &= mid <= n
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid + 1)
    cert_k = hi
    lo, hi = np.full(n_max, -1, dtype=np.int64), np.minimum(pivot + 1, n)  # not-certify boundary in [lo, hi]; -1 means never
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        ok = test.evidence(np.maximum(mid, 0), n, sides="against")[1] >= test.bar(np.maximum(mid, 0), n)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid - 1)
    fut_k = np.minimum(lo, cert_k - 1)
    cert_k.setflags(write=False)
    fut_k.setflags(write=False)
    return cert_k, fut_k


@dataclass(frozen=True)
class MixtureTest:
    """Anytime-valid test of ``p_A`` against ``p_star``, deciding after any sample, capped at ``n_max``.

    :meth:`decide` answers for ``k`` successes in ``n`` samples; :meth:`first_decision` scans a stream of
    outcomes for the first sample count at which either mixture crosses ``1/alpha``. Both keep the module's
    guarantee at any stopping time. ValueError unless ``0 < alpha < 1``, ``0 < p_star < 1``, ``n_max`` is a
    positive integer, ``0 < w_one < 1`` and ``0 < width <= 1``.
    """

    p_star: float
    alpha: float
    n_max: int
    w_one: float = W_ONE
    width: float = WIDTH

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if isinstance(self.n_max, bool) or not isinstance(self.n_max, numbers.Integral) or self.n_max < 1:
            raise ValueError(f"n_max must be a positive integer, got {self.n_max!r}")
        if not isinstance(self.p_star, numbers.Real) or not 0.0 < float(self.p_star) < 1.0:
            raise ValueError(f"p_star must lie strictly between 0 and 1, got {self.p_star!r}")
        if not 0.0 < self.w_one < 1.0 or not 0.0 < self.width <= 1.0:
            raise ValueError("w_one must lie in (0, 1) and width in (0, 1]")

    @property
    def threshold(self) -> float:
        """log(1/alpha): the evidence either mixture must reach."""
        return math.log(1.0 / self.alpha)

    def bar(self, k, n, q=None):
        """The evidence a crossing needs after ``k`` successes in ``n`` samples against the null ``q`` (default ``p_star``):
        ``log(1/alpha)`` rounded outward by the room for the evidence's rounding error (module docstring). Broadcasts
        over ``k``, ``n`` and ``q``."""
        q = np.asarray(self.p_star if q is None else q, dtype=float)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        null = k * np.log(q) + (n - k) * np.log1p(-q)
        scale = 700.0 + self.threshold + np.abs(null) + np.abs(betaln(k + 1.0, n - k + 1.0))
        return self.threshold + scale * _ROOM

    def evidence(self, k, n, q=None, sides: str = "both") -> tuple[np.ndarray | None, np.ndarray | None]:
        """log of the certify and not-certify mixtures after ``k`` successes in ``n`` samples, against the null ``q``
        (default ``p_star``); ``sides`` "certify" or "against" computes one (the other is None). Broadcasts over
        ``k``, ``n`` and ``q``."""
        q = np.asarray(self.p_star if q is None else q, dtype=float)
        k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
        null = k * np.log(q) + (n - k) * np.log1p(-q)
        near, far = math.log1p(-W_FAR), math.log(W_FAR)
        cert = against = None
        if sides in ("both", "certify"):
            hi = np.minimum(1.0, q + self.width)
            up = np.logaddexp(near + _log_mass(k, n, q, hi) - np.log(hi - q), far + _log_mass(k, n, q, 1.0) - np.log1p(-q))
            with np.errstate(divide="ignore"):
                point = np.where(k == n, math.log(self.w_one) - n * np.log(q), -np.inf)
            cert = np.logaddexp(math.log1p(-self.w_one) + up - null, point)
        if sides in ("both", "against"):
            lo = np.maximum(0.0, q - self.width)
            down = np.logaddexp(near + _log_mass(k, n, lo, q) - np.log(q - lo), far + _log_mass(k, n, 0.0, q) - np.log(q))
            against = down - null
        return cert, against

    def decide(self, k: int, n: int) -> Decision:
        """The decision after ``k`` successes in ``n`` samples (``1 <= n <= n_max``)."""
        if not 1 <= n <= self.n_max or not 0 <= k <= n:
            raise ValueError(f"need 0 <= k <= n and 1 <= n <= n_max = {self.n_max}, got k={k}, n={n}")
        cert, against = self.evidence(k, n)
        bar = self.bar(k, n)
        if cert >= bar:
            return Decision.CERTIFIED
        if against >= bar:
            return Decision.NOT_CERTIFIED
        return Decision.INCONCLUSIVE if n >= self.n_max else Decision.CONTINUE

    def first_decision(self, outcomes: np.ndarray, k_before: int = 0, n_before: int = 0) -> tuple[int, int, Decision]:
        """Scan new outcomes (bool, in stream order) that follow ``k_before`` successes in ``n_before`` samples;
        return ``(n, k, decision)`` at the first sample count where a mixture crosses, else at the last sample
        (``CONTINUE``, or ``INCONCLUSIVE`` at ``n_max``)."""
        outcomes = np.asarray(outcomes, dtype=bool)[: max(0, self.n_max - n_before)]
        k = k_before + np.cumsum(outcomes)
        n = n_before + np.arange(1, outcomes.size + 1)
        if not outcomes.size:
            return n_before, k_before, Decision.CONTINUE
        cert, against = self.evidence(k, n)
        bar = self.bar(k, n)
        hit = np.flatnonzero((cert >= bar) | (against >= bar))
        if hit.size:
            i = int(hit[0])
            return int(n[i]), int(k[i]), Decision.CERTIFIED if cert[i] >= bar[i] else Decision.NOT_CERTIFIED
        last = int(n[-1])
        return last, int(k[-1]), Decision.INCONCLUSIVE if last >= self.n_max else Decision.CONTINUE

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        """For n = 1..n_max: the fewest successes that certify, ``n + 1`` where none can, and the most successes
        that decide "not certified" (when not certifying), ``-1`` where none do. The certify mixture grows with k
        (each of its likelihood ratios does) and the other shrinks, so these two numbers are the whole test."""
        return _boundaries(float(self.p_star), float(self.alpha), int(self.n_max), float(self.w_one), float(self.width))

    def simulate(self, p_true: float, replicates: int, rng, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Run the test on ``replicates`` independent Bernoulli(``p_true``) streams: (decision strings, samples used)
        per stream, the decisions :meth:`first_decision` makes (for planning, benchmarks and validity checks).
        The boundaries are computed only as far as some stream is still undecided (a prefix, doubled as needed)."""
        horizon = 0
        cert_k = fut_k = None
        k = np.zeros(replicates, dtype=np.int64)
        used = np.full(replicates, self.n_max)
        decision = np.full(replicates, Decision.INCONCLUSIVE.value, dtype=object)
        alive = np.ones(replicates, dtype=bool)
        done = 0
        while done < self.n_max and alive.any():
            idx = np.flatnonzero(alive)
            width = min(block, self.n_max - done)
            if done + width > horizon:
                horizon = min(self.n_max, max(2 * horizon, done + width, 1024))
                cert_k, fut_k = _boundaries(float(self.p_star), float(self.alpha), horizon, float(self.w_one), float(self.width))
            cum = k[idx, None] + np.cumsum(rng.random((idx.size, width)) < p_true, axis=1)
            n = done + np.arange(1, width + 1)
            cert = cum >= cert_k[None, n - 1]
            against = ~cert & (cum <= fut_k[None, n - 1])
            hit = cert | against
            first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
            for row in np.flatnonzero(first >= 0):
                j = first[row]
                used[idx[row]] = n[j]
                decision[idx[row]] = (Decision.CERTIFIED if cert[row, j] else Decision.NOT_CERTIFIED).value
                alive[idx[row]] = False
            k[idx] = cum[:, -1]
            done += width
        return decision, used

    def min_samples_to_certify(self) -> int | None:
        """The fewest samples that can certify (every one agreeing), or None if ``n_max`` samples cannot."""
        n = np.arange(1, self.n_max + 1)
        cert, _ = self.evidence(n, n)
        hit = np.flatnonzero(cert >= self.bar(n, n))
        return int(n[hit[0]]) if hit.size else None

    def samples_to_certify(self) -> float:
        """The fewest samples that would certify with every sample agreeing, whatever ``n_max`` (``inf`` if none)."""
        # the point mass alone certifies at n >= (log(1/alpha) + log(1/w_one)) / log(1/p*): an upper bound to search below
        # (with the bar's room: at k = n its scale is 700 + log(1/alpha) + n log(1/p*) + log(n + 1), so one more
        # sample than the bound without it, plus the room's share, suffices)
        per = -math.log(self.p_star) * (1.0 - _ROOM)
        bound = math.ceil((self.threshold - math.log(self.w_one) + (700.0 + self.threshold + 60.0) * _ROOM) / per) + 1
        if bound > 10**9:
            return math.inf
        n = np.arange(1, bound + 1)
        cert, _ = self.evidence(n, n)
        return float(np.flatnonzero(cert >= self.bar(n, n))[0] + 1)

    def bounds(self, k: int, n: int) -> tuple[float, float]:
        """One-sided confidence bounds on ``p_A`` after ``k`` of ``n``, each at level ``1 - alpha`` and valid at any
        stopping time. The nulls tried are a grid of 2047 points plus ``p_star``; the lower bound is the largest
        null up to which every null tried is rejected by the certify mixture (if ``p_A`` were below it, the null
        next above ``p_A`` would have been rejected: chance <= alpha), the upper bound the smallest null from which
        every null tried is rejected by the not-certify mixture. A certified test's lower bound is thus >= p*."""
        grid = np.union1d(np.linspace(0.0, 1.0, _GRID + 1)[1:-1], [self.p_star])
        bar = self.bar(k, n, grid)
        cert, against = (e >= bar for e in self.evidence(k, n, grid))
        lower = 0.0 if not cert[0] else float(grid[-1] if cert.all() else grid[int(np.argmin(cert)) - 1])
        trailing = int(np.argmin(against[::-1])) if not against.all() else len(grid)
        upper = 1.0 if trailing == 0 else float(grid[len(grid) - trailing])
        return lower, upper
