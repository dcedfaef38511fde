"""Statistics for certification: confidence bounds on p_A, the sequential test, and sample-size laws.

Everything here is about a Bernoulli parameter ``p_A`` (the probability that
the oracle reads the target outcome from the smoothed model's output) estimated
from ``k`` successes in ``n`` independent noisy samples. numpy/scipy only.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass

import numpy as np

# the beta quantiles as scipy.special's inverses (the same Boost routines scipy.stats' beta calls, bit for bit):
# importing scipy.stats costs the command line 0.35 s
from scipy.special import betainccinv, betaincinv

from . import certificate as _words  # the status words, defined once
from .requirement import unit_interval

__all__ = [
    "clopper_pearson",
    "adjust_for_oracle_error",
    "max_certifiable_p_a",
    "samples_needed",
    "Decision",
    "SequentialTest",
]


def _check_alpha(alpha: float) -> float:
    """``alpha`` as a float; ValueError unless it lies strictly between 0 and 1 (the settings table's check)."""
    why = unit_interval("alpha", alpha)
    if why is not None:
        raise ValueError(f"{why}, got {alpha!r}")
    return float(alpha)


def _check_counts(k, n):
    k, n = np.asarray(k), np.asarray(n)
    if k.dtype.kind not in "iu" or n.dtype.kind not in "iu":
        raise TypeError("k and n must be integer counts")
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError("counts must satisfy 0 <= k <= n and n >= 1")
    return k, n


def clopper_pearson(k, n, alpha: float):
    """One-sided Clopper–Pearson bounds ``(lower, upper)``, each at confidence ``1 - alpha``.

    ``P[p_A >= lower] >= 1 - alpha`` and, separately, ``P[p_A <= upper] >= 1 - alpha``
    for every ``p_A`` (exact binomial tail inversion, never anti-conservative).
    ``k == n`` gives ``lower == alpha ** (1 / n)``; ``k == 0`` gives ``lower == 0`` and ``k == n`` ``upper == 1``.
    Broadcasts over ``k`` and ``n`` (floats for scalars, arrays otherwise). TypeError for non-integer counts;
    ValueError unless ``0 <= k <= n``, ``n >= 1`` and ``0 < alpha < 1``.
    """
    alpha = _check_alpha(alpha)
    k, n = _check_counts(k, n)
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, betaincinv(np.maximum(k, 1), n - k + 1, alpha), 0.0)
        upper = np.where(k < n, betainccinv(k + 1, np.maximum(n - k, 1), alpha), 1.0)
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def adjust_for_oracle_error(p_lower, error: float):
    """Seed 000: if the oracle disagrees with the ground truth on at most a fraction ``error`` of
    outputs, the true ``p_A`` is at least the oracle's ``p_lower - error`` (clipped at 0). The subtraction is
    rounded down (never above the exact difference: a lower bound stays one whatever the rounding). A float for a
    scalar, else an array; ValueError unless ``0 <= error < 1``."""
    if isinstance(error, bool) or not isinstance(error, numbers.Real) or not (0.0 <= float(error) < 1.0):
        raise ValueError(f"oracle error bound must lie in [0, 1), got {error!r}")
    p, e = np.asarray(p_lower, dtype=float), float(error)
    diff = p - e
    # Knuth's TwoSum: the exact rounding error of p + (-e); negative means the double is above the exact difference
    back = diff - p
    rounding = (p - (diff - back)) + (-e - back)
    diff = np.where(rounding < 0, np.nextafter(diff, -np.inf), diff)
    out = np.maximum(diff, 0.0)
    return float(out) if out.ndim == 0 else out


def max_certifiable_p_a(n, alpha: float, oracle_error: float = 0.0):
    """Seed 000's sample-size law: the largest lower bound ``n`` samples can give, ``alpha ** (1/n) - e``
    (all samples agree), clipped at 0. Feed it to :func:`certkit.bounds.max_radius` for the largest reachable radius.
    Broadcasts over ``n``; ValueError unless every ``n`` is an integer >= 1 and ``0 < alpha < 1``."""
    alpha = _check_alpha(alpha)
    n = np.asarray(n)
    if n.dtype.kind not in "iu" or np.any(n < 1):
        raise ValueError("n must be a positive integer number of samples")
    return adjust_for_oracle_error(np.power(alpha, 1.0 / n), oracle_error)


def samples_needed(p_star, alpha: float, oracle_error: float = 0.0):
    """Smallest ``n`` whose all-agree Clopper–Pearson bound, less the oracle error, reaches ``p_star``:
    ``n >= ln(1/alpha) / ln(1/(p_star + e))``. ``inf`` where no ``n`` can (``p_star + e >= 1``).

    For Cohen's certificate at ``tau = 1/2``, ``p_star = Phi(r / sigma)`` gives seed 000's
    ``n >= ln(1/alpha) / ln(1/Phi(r/sigma))``. At least 1; a float (``inf`` included) for a scalar, else an
    array. ValueError for a NaN ``p_star``, ``alpha`` outside (0, 1) or ``oracle_error`` outside [0, 1).
    """
    alpha = _check_alpha(alpha)
    if isinstance(oracle_error, bool) or not (0.0 <= float(oracle_error) < 1.0):
        raise ValueError(f"oracle error bound must lie in [0, 1), got {oracle_error!r}")
    target = np.asarray(p_star, dtype=float) + float(oracle_error)
    if np.any(np.isnan(target)):
        raise ValueError("p_star must not be NaN")
    with np.errstate(divide="ignore"):
        n = np.where(
            target >= 1.0,
            np.inf,
            np.where(target <= alpha, 1.0, np.ceil(math.log(1.0 / alpha) / -np.log1p(np.minimum(target, 1.0) - 1.0) - 1e-9)),
        )
    return float(n) if n.ndim == 0 else n


class Decision(str, enum.Enum):
    """Outcome of a (sequential) certification test: ``CERTIFIED`` or ``NOT_CERTIFIED`` once decided,
    ``CONTINUE`` while undecided with samples left, ``INCONCLUSIVE`` when ``n_max`` samples did not decide. The
    values are the status words certificates carry (``str`` enum: ``Decision.CERTIFIED == "certified"``)."""

    CERTIFIED = _words.CERTIFIED
    NOT_CERTIFIED = _words.NOT_CERTIFIED
    INCONCLUSIVE = _words.INCONCLUSIVE
    CONTINUE = "continue"


@dataclass(frozen=True)
class SequentialTest:
    """Anytime-valid test of ``H0: p_A < p_star`` that can stop early either way.

    Clopper–Pearson on a geometric grid of looks ``n_1 < n_2 < ... <= n_max`` with
    the error budget spent evenly across the looks (``alpha / J`` each):

    * at look ``j``, *certified* if the lower bound at level ``alpha / J`` is ``>= p_star``
      (``> p_star`` when ``strict``);
    * *not certified* if the upper bound at level ``alpha / J`` is below ``p_star`` (or, when
      ``strict``, not above it);
    * *inconclusive* if neither has happened by ``n_max``.

    Guarantee (union bound over the looks): whatever the stopping time, if the true
    ``p_A < p_star`` (``<=`` when strict) the probability of certifying is at most ``alpha``;
    symmetrically, if ``p_A >= p_star`` the probability of *not certified* is at most ``alpha``.
    Each of the two bounds :meth:`bounds` reports holds at every look at once (union bound) with probability
    ``>= 1 - alpha``, so also at the stop. Superseded in the engine by :class:`certkit.sequential.MixtureTest`
    (kept for the benchmarks that compare the two). ValueError for a bad ``alpha``, ``n_max``, ``n_min``,
    ``growth`` or a NaN ``p_star``.
    """

    p_star: float
    alpha: float
    n_max: int
    n_min: int = 32
    growth: float = 1.5
    strict: bool = False

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if isinstance(self.n_max, bool) or not isinstance(self.n_max, numbers.Integral) or self.n_max < 1:
            raise ValueError(f"n_max must be a positive integer, got {self.n_max!r}")
        if isinstance(self.n_min, bool) or not isinstance(self.n_min, numbers.Integral) or self.n_min < 1:
            raise ValueError(f"n_min must be a positive integer, got {self.n_min!r}")
        if not (isinstance(self.growth, numbers.Real) and self.growth > 1.0):
            raise ValueError(f"growth must be a number > 1, got {self.growth!r}")
        if math.isnan(float(self.p_star)):
            raise ValueError("p_star must not be NaN")
        object.__setattr__(self, "_looks", self._schedule())

    def _schedule(self) -> tuple[int, ...]:
        looks, n = [], min(self.n_min, self.n_max)
        while n < self.n_max:
            looks.append(n)
            n = max(n + 1, int(math.ceil(n * self.growth)))
        looks.append(self.n_max)
        return tuple(looks)

    @property
    def looks(self) -> tuple[int, ...]:
        """The sample counts at which the test looks at the data: strictly increasing from ``min(n_min, n_max)``,
        each ``max(n + 1, ceil(growth * n))`` after the look ``n`` before it, up to and ending at ``n_max``."""
        return self._looks  # type: ignore[attr-defined]

    @property
    def alpha_per_look(self) -> float:
        """``alpha / J``: the error budget each of the ``J`` looks spends on each side."""
        return self.alpha / len(self.looks)

    def bounds(self, k: int, n: int) -> tuple[float, float]:
        """Clopper–Pearson ``(lower, upper)`` after ``k`` successes in ``n`` samples, each at level ``1 - alpha / J``."""
        return clopper_pearson(int(k), int(n), self.alpha_per_look)

    def decide(self, k: int, n: int) -> Decision:
        """Decision after ``k`` successes in ``n`` samples, ``n`` being one of :attr:`looks` (ValueError otherwise).
        ``NOT_CERTIFIED`` whatever the data when ``p_star > 1`` (no ``p_A`` reaches it)."""
        if n not in self.looks:
            raise ValueError(f"n={n} is not a look of this test; looks are {self.looks}")
        lower, upper = self.bounds(k, n)
        if self.p_star > 1.0:
            return Decision.NOT_CERTIFIED
        if (lower > self.p_star) if self.strict else (lower >= self.p_star):
            return Decision.CERTIFIED
        if (upper <= self.p_star) if self.strict else (upper < self.p_star):
            return Decision.NOT_CERTIFIED
        return Decision.INCONCLUSIVE if n >= self.n_max else Decision.CONTINUE
