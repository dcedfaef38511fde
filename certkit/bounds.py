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

import math
import numbers

import numpy as np
from scipy.special import ndtr, ndtri

from .noise import Atoms, Gaussian, Mask, UniformReplace

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
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_MAX_ITER = 200


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


# --------------------------------------------------------------------------- probit helpers


def _probit(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``Phi^-1(p)`` given ``p`` and its complement ``q = 1 - p`` (both accurate)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q < 0.5, -ndtri(q), ndtri(p))


def _phi(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / _SQRT_2PI


# --------------------------------------------------------------------------- text only: the knapsack


def _knapsack(p_a: np.ndarray, atoms: Atoms) -> np.ndarray:
    """Adversarial mass of the worst-case region of clean mass ``p_a``.

    Atoms are filled in ascending likelihood ratio; the last one fractionally.
    ``p_a - C_{k-1}`` is formed from the upper tail when ``p_a > 1/2`` so that
    values of ``p_a`` within 1e-12 of 1 keep their precision.
    """
    p = p_a[..., None]
    clean, adv = atoms.clean, atoms.adversarial
    before = np.concatenate(([0.0], np.cumsum(clean)[:-1]))  # C_{k-1}
    from_k = np.cumsum(clean[::-1])[::-1]  # sum_{j >= k} clean_j = 1 - C_{k-1}
    room = np.where(p > 0.5, from_k - (1.0 - p), p - before)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(clean > 0, room / np.where(clean > 0, clean, 1.0), 0.0)
    frac = np.clip(frac, 0.0, 1.0)
    return np.clip((frac * adv).sum(axis=-1), 0.0, 1.0)


def _knapsack_inverse(tau: float, atoms: Atoms) -> float:
    """Smallest clean mass whose worst-case region holds adversarial mass ``tau``."""
    reachable = atoms.clean > 0  # gamma = +inf atoms hold adversarial mass no clean mass can buy
    clean, adv = atoms.clean[reachable], atoms.adversarial[reachable]
    if tau > adv.sum() * (1 + 1e-15) or (tau >= adv.sum() and tau == 0.5):
        return math.inf
    before = np.concatenate(([0.0], np.cumsum(adv)[:-1]))
    room = tau - before
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(adv > 0, room / np.where(adv > 0, adv, 1.0), np.where(room > 0, 1.0, 0.0))
    return float(min(1.0, (np.clip(frac, 0.0, 1.0) * clean).sum()))


# --------------------------------------------------------------------------- hybrid: F, V and the root in u


class _Hybrid:
    """The hybrid certificate for one Gaussian sigma and one atom set.

    ``F(u; r) = P_-inf + sum_k p_k Phi(r/(2 sigma) + sigma (u - lg_k) / r)`` (clean mass of the
    worst-case region ``{log gamma <= u}``) and ``V(u; r) = sum_k q_k Phi(-r/(2 sigma) + sigma (u - lg_k) / r)``
    (its adversarial mass) are both continuous and strictly increasing in ``u``. Roots are
    found in the scaled variable ``w = sigma u / r`` so that the resolution follows the width
    ``r / sigma`` of each smoothed atom; when neighbouring atoms are more than
    ``_SEPARATED`` widths apart, the root lies inside one atom and is given in closed form.
    """

    _SEPARATED = 80.0

    def __init__(self, sigma: float, atoms: Atoms):
        finite = np.isfinite(atoms.log_gamma)
        self.sigma = sigma
        self.lg = atoms.log_gamma[finite]
        self.p = atoms.clean[finite]
        self.q = atoms.adversarial[finite]
        self.p_minus_inf = float(atoms.clean[atoms.log_gamma == -np.inf].sum())
        self.q_plus_inf = float(atoms.adversarial[atoms.log_gamma == np.inf].sum())
        self.p_finite = float(self.p.sum())
        self.q_finite = float(self.q.sum())
        self.min_gap = float(np.min(np.diff(self.lg))) if self.lg.size > 1 else np.inf

    def _side(self, sign):
        """(weights, mass below the finite atoms, mass above them) of F (sign=+1) or V (sign=-1)."""
        if sign > 0:
            return self.p, self.p_minus_inf, 0.0
        return self.q, 0.0, self.q_plus_inf

    def _masses_w(self, w, r, sign):
        weights, below, above = self._side(sign)
        s = self.sigma
        a = (sign * r / (2 * s))[..., None] + w[..., None] - s * self.lg / r[..., None]
        value = (weights * ndtr(a)).sum(-1) + below
        comp = (weights * ndtr(-a)).sum(-1) + above
        slope = (weights * _phi(a)).sum(-1)
        return value, comp, slope

    def _solve_w(self, target, target_comp, r, sign, w0=None):
        """Newton on the probit scale in ``w``, safeguarded by the bracket ``[s_0, s_K] + z' - c``
        (``s_k = sigma lg_k / r``) that the extreme atoms give."""
        weights, below, above = self._side(sign)
        s, total = self.sigma, weights.sum()
        z_scaled = _probit((target - below) / total, (target_comp - above) / total)
        offset = z_scaled - sign * r / (2 * s)
        lo = s * self.lg[0] / r + offset
        hi = s * self.lg[-1] / r + offset
        z_target = _probit(target, target_comp)
        w = np.clip(w0, lo, hi) if w0 is not None else 0.5 * (lo + hi)
        active = np.ones(w.shape, dtype=bool)
        for _ in range(_MAX_ITER):
            idx = np.nonzero(active)
            if idx[0].size == 0:
                break
            wa = w[idx]
            value, comp, slope = self._masses_w(wa, r[idx], sign)
            z = _probit(value, comp)
            g = z - z_target[idx]
            lo[idx] = np.where(g <= 0, wa, lo[idx])
            hi[idx] = np.where(g >= 0, wa, hi[idx])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                new = wa - g * _phi(z) / slope
            bad = ~np.isfinite(new) | (new <= lo[idx]) | (new >= hi[idx])
            new = np.where(bad, 0.5 * (lo[idx] + hi[idx]), new)
            tol = 1e-14 * (1.0 + np.abs(wa))
            done = (np.abs(g) < 1e-13) | (np.abs(new - wa) <= tol) | (hi[idx] - lo[idx] <= tol)
            w[idx] = np.where(done, wa, new)  # a converged iterate is returned as it is
            active[idx] = ~done
        return w

    def _solve_separated(self, target, target_comp, r, sign):
        """Closed form when every atom is > _SEPARATED widths from its neighbours: the root
        lies in the atom ``j`` where the knapsack fill stops, at ``Phi^-1`` of its filled fraction."""
        weights, below, above = self._side(sign)
        t, tc = target[..., None], target_comp[..., None]
        before = below + np.concatenate(([0.0], np.cumsum(weights)[:-1]))
        from_k = np.cumsum(weights[::-1])[::-1] + above
        room = np.where(t > 0.5, from_k - tc, t - before)
        frac = np.clip(room / weights, 0.0, 1.0)
        j = np.minimum((frac >= 1.0).sum(-1), weights.size - 1)
        f = np.take_along_axis(frac, j[..., None], -1)[..., 0]
        z = _probit(f, 1.0 - f)
        s = self.sigma
        with np.errstate(invalid="ignore", over="ignore"):
            u = self.lg[j] + (r / s) * (z - sign * r / (2 * s))
        # the other side's mass: atoms below j whole, atom j at the shifted fraction
        other_w, other_below, _ = self._side(-sign)
        other_before = other_below + np.concatenate(([0.0], np.cumsum(other_w)[:-1]))
        other = other_before[j] + other_w[j] * ndtr(z - sign * r / s)
        return u, other

    def solve(self, target, r, sign, u0=None):
        """Root ``u`` of ``F(u; r) = target`` (sign=+1) or ``V(u; r) = target`` (sign=-1), and the
        other side's mass there (``V`` for sign=+1, ``F`` for sign=-1). ``target`` must lie strictly
        inside the range of the finite atoms."""
        target_comp = 1.0 - target
        u = np.empty(target.shape)
        other = np.empty(target.shape)
        # the atoms' gap in widths r / sigma, compared without dividing by r: a radius near the smallest double
        # (max_radius confirms its roots down to 1e-300) would overflow sigma * gap / r to inf
        sep = self.sigma * self.min_gap > self._SEPARATED * r
        if sep.any():
            u[sep], other[sep] = self._solve_separated(target[sep], target_comp[sep], r[sep], sign)
        near = ~sep
        if near.any():
            rn = r[near]
            w0 = None if u0 is None else self.sigma * np.broadcast_to(u0, target.shape)[near] / rn
            w = self._solve_w(target[near], target_comp[near], rn, sign, w0)
            u[near] = w * rn / self.sigma
            other[near], _, _ = self._masses_w(w, rn, -sign)
        return u, other

    def p_adv(self, p_a, r, u0=None):
        """``(p_adv, u*)`` for clean probabilities ``p_a`` at image radii ``r > 0``."""
        p_a, r = np.broadcast_arrays(np.asarray(p_a, float), np.asarray(r, float))
        p_a, r = p_a.astype(float).copy(), r.astype(float).copy()
        out = np.zeros(p_a.shape)
        u = np.full(p_a.shape, -np.inf)
        top = p_a >= 1.0
        out[top] = self.q_finite  # u* = +inf: the whole finite part of the adversarial mass
        u[top] = np.inf
        inside = (p_a > self.p_minus_inf) & ~top
        if inside.any():
            warm = None if u0 is None else np.broadcast_to(u0, p_a.shape)[inside]
            u[inside], value = self.solve(p_a[inside], r[inside], +1, warm)
            out[inside] = np.clip(value, 0.0, 1.0)
        return out, u

    def radius_newton_terms(self, u, r):
        """``V``, its complement, and ``dV/dr`` along the curve ``F(u*(r); r) = p_a``."""
        s = self.sigma
        r_ = r[..., None]
        a = r_ / (2 * s) + s * (u[..., None] - self.lg) / r_
        b = a - r_ / s
        da_dr = 1 / (2 * s) - s * (u[..., None] - self.lg) / r_**2
        db_dr = da_dr - 1 / s
        pa, qb = self.p * _phi(a), self.q * _phi(b)
        f_u, f_r = pa.sum(-1) * s / r, (pa * da_dr).sum(-1)
        v_u, v_r = qb.sum(-1) * s / r, (qb * db_dr).sum(-1)
        value = (self.q * ndtr(b)).sum(-1)
        comp = (self.q * ndtr(-b)).sum(-1) + self.q_plus_inf
        with np.errstate(divide="ignore", invalid="ignore"):
            dv_dr = v_r - v_u * f_r / f_u
            du_dr = -f_r / f_u
        return value, comp, dv_dr, du_dr

    def max_radius(self, p_a, tau, r_cohen):
        """Largest ``r`` in ``(0, r_cohen]`` with ``V(u*(r); r) >= tau`` (caller checked ``r -> 0`` certifies).

        Safeguarded Newton on ``Phi^-1(V(r)) - Phi^-1(tau)`` with the total
        derivative ``dV/dr = V_r - V_u F_r / F_u``; ``r_cohen`` (the image-only
        radius) is an upper bound because more text edits can only lower p_adv.
        """
        n = p_a.shape[0]
        lo = np.zeros(n)
        hi = r_cohen.copy()
        r = 0.5 * hi
        u = None
        z_tau = float(ndtri(tau))
        active = np.ones(n, dtype=bool)
        for _ in range(_MAX_ITER):
            idx = np.nonzero(active)[0]
            if idx.size == 0:
                break
            ra = r[idx]
            ua, _ = self.solve(p_a[idx], ra, +1, None if u is None else u[idx])
            if u is None:
                u = np.zeros(n)
            u[idx] = ua
            value, comp, dv_dr, du_dr = self.radius_newton_terms(ua, ra)
            zv = _probit(value, comp)
            h = zv - z_tau
            ok = h >= 0
            lo[idx] = np.where(ok, ra, lo[idx])
            hi[idx] = np.where(ok, hi[idx], ra)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                new = ra - h * _phi(zv) / dv_dr
            bad = ~np.isfinite(new) | (new <= lo[idx]) | (new >= hi[idx])
            new = np.where(bad, 0.5 * (lo[idx] + hi[idx]), new)
            step = np.abs(new - ra)
            done = (step <= 1e-13 * (1.0 + ra)) | (hi[idx] - lo[idx] <= 1e-13 * (1.0 + ra))
            # predictor for the next inner solve
            with np.errstate(invalid="ignore"):
                pred = ua + np.where(np.isfinite(du_dr), du_dr, 0.0) * (new - ra)
            u[idx] = np.where(np.isfinite(pred), pred, ua)
            r[idx] = np.where(done, ra, new)
            active[idx] = ~done
        # confirm just below each converged root, stepping back until p_adv >= tau is recomputed there
        pending = np.arange(n)
        for margin in (1e-12, 1e-10, 1e-8):
            if pending.size == 0:
                break
            cand = np.maximum(np.minimum(r[pending] * (1 - margin) - margin, hi[pending]), lo[pending])
            check, _ = self.p_adv(p_a[pending], np.maximum(cand, 1e-300), u[pending])
            good = (check >= tau) & (cand > 0)  # the supremum: the boundary itself counts
            lo[pending] = np.where(good, cand, lo[pending])
            pending = pending[~good]
        return lo


def _groups(edits: np.ndarray):
    for d in np.unique(edits):
        yield int(d), edits == d


def _cohen_p_adv(p_a, radius, sigma):
    z = _probit(p_a, 1.0 - p_a)
    with np.errstate(invalid="ignore"):  # p_a = 1 at an infinite radius: inf - inf, decided by the where
        return np.where(np.isposinf(z), 1.0, np.clip(ndtr(z - radius / sigma), 0.0, 1.0))


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
            res = pa.copy() if image is None else _cohen_p_adv(pa, rr, image.sigma)
        else:
            atoms = text.atoms(d)
            res = _knapsack(pa, atoms)
            pos = rr > 0
            if pos.any():
                if np.isinf(rr[pos]).any():
                    inf_r = pos & np.isinf(rr)
                    res[inf_r] = 0.0
                    pos = pos & ~inf_r
                if pos.any():
                    res[pos], _ = _Hybrid(image.sigma, atoms).p_adv(pa[pos], rr[pos])
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
            res[:] = ndtr(ndtri(tau) + rr / image.sigma)
        if d > 0:
            atoms = text.atoms(d)
            zero = rr == 0
            res[zero] = _knapsack_inverse(tau, atoms)
            pos = ~zero & np.isfinite(rr)
            res[np.isinf(rr)] = np.inf
            if pos.any():
                hyb = _Hybrid(image.sigma, atoms)
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
        r_cohen = sigma * (_probit(pa, 1.0 - pa) - ndtri(tau))
        if d == 0:
            res = np.where(is_certified(pa, tau), r_cohen, -np.inf)
        else:
            atoms = text.atoms(d)
            p0 = _knapsack(pa, atoms)
            res = np.where(is_certified(p0, tau), 0.0, -np.inf)
            hyb = _Hybrid(sigma, atoms)
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
