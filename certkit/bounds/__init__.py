"""Neyman–Pearson certificates for smoothed classifiers (numpy/scipy only).

Notation: ``p_a`` is the probability (under the smoothing noise) that the
smoothed model produces the target outcome A on the clean input; ``threshold``
``tau`` is the floor the worst-case probability must clear. All functions are
plain numpy functions that broadcast over the arguments they take of ``p_a``,
``radius`` and ``edits``; ``worst_case``, ``required_p_a``, ``max_radius`` and
``max_edits`` return a Python float (``max_edits``: an int) for scalar input.

Guarantees
----------
``worst_case`` returns ``p_adv(d, eps)``: the smallest probability of outcome A
that *any* classifier with clean probability ``p_a`` can have on *any* input
within ``d`` token edits and image l2 distance ``eps``:

* image only (Cohen et al. 2019): ``Phi(Phi^-1(p_a) - eps / sigma)``;
* text only: the fractional knapsack over the kernel's likelihood-ratio atoms
  (reproduces Lee et al. 2019 exactly);
* hybrid (seed 003): ``V(eps)`` with ``F(t*; eps) = p_a`` solved in ``u = log t``.

Each case is its module: :mod:`~certkit.bounds.cohen`, :mod:`~certkit.bounds.knapsack` and
:mod:`~certkit.bounds.hybrid`; this one checks the arguments and sends each group of edits to its case.

The outcome is *certified* at ``(d, eps)`` iff ``p_adv >= tau``, or
``p_adv > tau`` when ``tau == 1/2`` (a strict majority). ``max_radius`` returns
the supremum of certified radii: certified for every ``eps`` below it (and at it
when ``tau != 1/2``); ``-inf`` when not certified even at ``eps = 0``; ``inf``
when certified at every radius. The solver keeps the radius on the certified
side: the returned radius is one at which ``p_adv`` was recomputed and found
``>= tau`` (probability tolerance ~1e-13, far below any sampling error).
No function returns NaN for valid input (``worst_case`` at ``p_a = 1`` is 1 at every image radius, an infinite
one included: the shifted Gaussian charges no set the centred one does not).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..noise import Gaussian, Mask, UniformReplace
from . import cohen, knapsack
from .hybrid import Hybrid

__all__ = [
    "DEFAULT_THRESHOLD",
    "is_certified",
    "worst_case",
    "max_radius",
    "max_edits",
    "required_p_a",
    "frontier",
]

DEFAULT_THRESHOLD = 0.5


# --------------------------------------------------------------------------- validation


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number in (0, 1), got {threshold!r}")
    threshold = float(threshold)
    if not (0.0 < threshold < 1.0):
        raise ValueError(f"threshold (tau) must lie strictly between 0 and 1, got {threshold!r}")
    return threshold


def _as_p_a(p_a) -> np.ndarray:
    arr = np.asarray(p_a, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any((arr < 0.0) | (arr > 1.0)):
        raise ValueError("p_a must be probabilities in [0, 1] (finite, no NaN)")
    return arr


def _as_edits(edits) -> np.ndarray:
    arr = np.asarray(edits)
    if arr.dtype.kind == "f":
        if np.any(~np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("edits must be non-negative integers (number of edited token positions)")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu" or np.any(arr < 0):
        raise ValueError("edits must be non-negative integers (number of edited token positions)")
    return arr.astype(np.int64)


def _as_radius(radius) -> np.ndarray:
    arr = np.asarray(radius, dtype=float)
    if np.any(np.isnan(arr)) or np.any(arr < 0.0):
        raise ValueError("radius must be a non-negative l2 distance (no NaN)")
    return arr


def _check_kernels(image, text) -> None:
    if image is not None and not isinstance(image, Gaussian):
        raise TypeError(f"image must be a certkit.noise.Gaussian or None, got {type(image).__name__}")
    if text is not None and not isinstance(text, (UniformReplace, Mask)):
        raise TypeError(f"text must be a certkit.noise.UniformReplace, Mask or None, got {type(text).__name__}")


def is_certified(p_adv, threshold: float = DEFAULT_THRESHOLD):
    """Elementwise ``p_adv >= tau``, or strictly ``>`` for the majority threshold ``tau = 1/2``, as a numpy bool
    (array). The one certification rule every function here and the engine apply; ``threshold`` is not checked."""
    p_adv = np.asarray(p_adv, dtype=float)
    return p_adv > threshold if threshold == 0.5 else p_adv >= threshold


def _groups(edits: np.ndarray):
    for d in np.unique(edits):
        yield int(d), edits == d


# --------------------------------------------------------------------------- public API


def worst_case(p_a, image: Gaussian | None = None, radius=0.0, text=None, edits=0):
    """Worst-case probability ``p_adv(d, eps)`` of outcome A within ``edits`` token edits and image l2 ``radius``.

    ``p_a`` is the clean probability (use a statistical *lower* bound to get a
    sound certificate). Broadcasts over ``p_a``, ``radius`` and ``edits``.
    Returns a probability in [0, 1]: non-increasing in ``edits`` and ``radius``,
    non-decreasing in ``p_a``, ``p_a`` itself (up to rounding) at ``edits = 0, radius = 0``.
    Raises ValueError for ``p_a`` outside [0, 1],
    a negative or NaN radius, negative or fractional edits, a radius > 0 without an
    image kernel or edits > 0 without a text kernel; TypeError for a kernel of the wrong kind.
    """
    _check_kernels(image, text)
    p_a, radius, edits = np.broadcast_arrays(_as_p_a(p_a), _as_radius(radius), _as_edits(edits))
    if image is None and np.any(radius > 0):
        raise ValueError("radius > 0 needs an image kernel: pass image=Gaussian(sigma)")
    if text is None and np.any(edits > 0):
        raise ValueError("edits > 0 needs a text kernel: pass text=UniformReplace(beta, vocab) or Mask(beta)")
    out = np.empty(p_a.shape)
    for d, sel in _groups(edits):
        pa, rr = p_a[sel], radius[sel]
        if d == 0:
            res = pa.copy() if image is None else cohen.worst_case(pa, rr, image.sigma)
        else:
            atoms = text.atoms(d)
            res = knapsack.worst_case(pa, atoms)
            pos = rr > 0
            if pos.any():
                if np.isinf(rr[pos]).any():
                    inf_r = pos & np.isinf(rr)
                    res[inf_r] = 0.0
                    pos = pos & ~inf_r
                if pos.any():
                    res[pos], _ = Hybrid(image.sigma, atoms).p_adv(pa[pos], rr[pos])
        out[sel] = res
    return out if out.ndim else float(out)


def required_p_a(image: Gaussian | None = None, radius=0.0, text=None, edits=0, threshold: float = DEFAULT_THRESHOLD):
    """``p*``: the smallest clean probability whose worst case at ``(edits, radius)`` reaches ``threshold``.

    Inverse of :func:`worst_case` in ``p_a``: the boundary where the worst case reaches ``threshold``, so a
    requirement is certified iff ``p_a >= p*`` (strictly ``>`` when ``threshold == 1/2``), up to rounding: the
    round trip is ill-conditioned (``d p_adv / d p_a`` can reach ``rho ** d``), so ``worst_case(p*)`` may miss
    ``threshold`` by a few ulps; :class:`certkit.Smoothed` nudges ``p*`` up until it does not. Returns ``inf``
    where no ``p_a <= 1`` suffices (an infinite radius with edits, or a threshold above the reachable mass).
    Broadcasts over ``radius`` and ``edits``; raises as :func:`worst_case` does, and for a threshold outside (0, 1).
    """
    _check_kernels(image, text)
    tau = _check_threshold(threshold)
    radius, edits = np.broadcast_arrays(_as_radius(radius), _as_edits(edits))
    if image is None and np.any(radius > 0):
        raise ValueError("radius > 0 needs an image kernel: pass image=Gaussian(sigma)")
    if text is None and np.any(edits > 0):
        raise ValueError("edits > 0 needs a text kernel: pass text=UniformReplace(beta, vocab) or Mask(beta)")
    out = np.empty(radius.shape)
    for d, sel in _groups(edits):
        rr = radius[sel]
        res = np.empty(rr.shape)
        if image is None:
            res[:] = tau
        else:
            res[:] = cohen.required_p_a(tau, rr, image.sigma)
        if d > 0:
            atoms = text.atoms(d)
            zero = rr == 0
            res[zero] = knapsack.required_p_a(tau, atoms)
            pos = ~zero & np.isfinite(rr)
            res[np.isinf(rr)] = np.inf
            if pos.any():
                hyb = Hybrid(image.sigma, atoms)
                if tau >= hyb.q_finite:
                    res[pos] = np.inf
                else:
                    rp = rr[pos]
                    _, value = hyb.solve(np.full(rp.shape, tau), rp, -1)
                    res[pos] = np.clip(value, 0.0, 1.0)
        out[sel] = res
    return out if out.ndim else float(out)


def max_radius(p_a, image: Gaussian, text=None, edits=0, threshold: float = DEFAULT_THRESHOLD):
    """Largest image l2 radius certified at ``edits`` token edits (the supremum; see module docstring).

    ``-inf`` where not certified even with a clean image, ``inf`` where certified
    at every radius. For ``edits == 0`` this is Cohen's
    ``sigma (Phi^-1(p_a) - Phi^-1(tau))``. Broadcasts over ``p_a`` and ``edits``.
    For ``edits > 0`` the solver's radius is one at which ``worst_case`` was recomputed and found to certify (see
    the module docstring). Raises TypeError unless ``image`` is a :class:`~certkit.noise.Gaussian`, and as
    :func:`required_p_a` does for the other arguments.
    """
    if not isinstance(image, Gaussian):
        raise TypeError("max_radius needs image=Gaussian(sigma): the radius is an image l2 distance")
    _check_kernels(image, text)
    tau = _check_threshold(threshold)
    p_a, edits = np.broadcast_arrays(_as_p_a(p_a), _as_edits(edits))
    if text is None and np.any(edits > 0):
        raise ValueError("edits > 0 needs a text kernel: pass text=UniformReplace(beta, vocab) or Mask(beta)")
    sigma = image.sigma
    out = np.empty(p_a.shape)
    for d, sel in _groups(edits):
        pa = p_a[sel].astype(float)
        r_cohen = cohen.max_radius(pa, tau, sigma)
        if d == 0:
            res = np.where(is_certified(pa, tau), r_cohen, -np.inf)
        else:
            atoms = text.atoms(d)
            p0 = knapsack.worst_case(pa, atoms)
            res = np.where(is_certified(p0, tau), 0.0, -np.inf)
            hyb = Hybrid(sigma, atoms)
            top = pa >= 1.0
            if top.any():  # p_adv = sum of the finite adversarial mass at every radius
                res[top] = np.where(is_certified(hyb.q_finite, tau), np.inf, -np.inf)
            solve = (res == 0.0) & ~top & (r_cohen > 0)
            if solve.any():
                res[solve] = hyb.max_radius(pa[solve], tau, r_cohen[solve])
        out[sel] = res
    return out if out.ndim else float(out)


def frontier(p_a, image: Gaussian, text=None, max_edits: int = 8, threshold: float = DEFAULT_THRESHOLD):
    """Max certified radius for ``d = 0..max_edits``: shape ``p_a.shape + (max_edits + 1,)``.

    Non-increasing in ``d`` by construction (a budget of ``d`` edits includes every smaller budget): entry ``d``
    is the smallest :func:`max_radius` over ``0..d``. Raises ValueError for a ``max_edits`` that is not a
    non-negative integer, or one above 0 without a text kernel.
    """
    if isinstance(max_edits, bool) or not isinstance(max_edits, numbers.Integral) or max_edits < 0:
        raise ValueError(f"max_edits must be a non-negative integer, got {max_edits!r}")
    if text is None and max_edits > 0:
        raise ValueError("a frontier over edits needs a text kernel: pass text=UniformReplace(beta, vocab) or Mask(beta)")
    p_a = _as_p_a(p_a)
    d = np.arange(max_edits + 1)
    radii = max_radius(p_a[..., None], image, text, d, threshold)
    return np.minimum.accumulate(radii, axis=-1)


def max_edits(p_a, image: Gaussian | None = None, radius=0.0, text=None, threshold: float = DEFAULT_THRESHOLD, limit: int = 64):
    """Largest number of token edits ``d <= limit`` certified at image ``radius``; ``-1`` if none (not even ``d = 0``).

    Every ``d`` up to the answer is certified too (the search stops at the first that is not). An int for scalar
    input, else an int64 array; raises ValueError without a text kernel or for a negative ``limit``."""
    if text is None:
        raise ValueError("max_edits needs a text kernel: pass text=UniformReplace(beta, vocab) or Mask(beta)")
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    tau = _check_threshold(threshold)
    p_a, radius = np.broadcast_arrays(_as_p_a(p_a), _as_radius(radius))
    best = np.full(p_a.shape, -1, dtype=np.int64)
    alive = np.ones(p_a.shape, dtype=bool)
    for d in range(limit + 1):
        if not alive.any():
            break
        ok = is_certified(worst_case(p_a[alive], image, radius[alive], text, d), tau)
        sub = best[alive]
        sub[ok] = d
        best[alive] = sub
        still = alive.copy()
        still[alive] = ok
        alive = still
    return best if best.ndim else int(best)
