"""The hybrid certificate (image l2 radius and token edits together, seed 003): the Neyman–Pearson region
``{log gamma <= u}`` over the text kernel's likelihood-ratio atoms, each smoothed by the image Gaussian, solved in
``u = log t`` for ``F(u; r) = p_a``; its adversarial mass ``V`` is ``p_adv``. numpy/scipy only."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from ..noise import Atoms
from .cohen import phi, probit

_MAX_ITER = 200


class Hybrid:
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
        slope = (weights * phi(a)).sum(-1)
        return value, comp, slope

    def _solve_w(self, target, target_comp, r, sign, w0=None):
        """Newton on the probit scale in ``w``, safeguarded by the bracket ``[s_0, s_K] + z' - c``
        (``s_k = sigma lg_k / r``) that the extreme atoms give."""
        weights, below, above = self._side(sign)
        s, total = self.sigma, weights.sum()
        z_scaled = probit((target - below) / total, (target_comp - above) / total)
        offset = z_scaled - sign * r / (2 * s)
        lo = s * self.lg[0] / r + offset
        hi = s * self.lg[-1] / r + offset
        z_target = probit(target, target_comp)
        w = np.clip(w0, lo, hi) if w0 is not None else 0.5 * (lo + hi)
        active = np.ones(w.shape, dtype=bool)
        for _ in range(_MAX_ITER):
            idx = np.nonzero(active)
            if idx[0].size == 0:
                break
            wa = w[idx]
            value, comp, slope = self._masses_w(wa, r[idx], sign)
            z = probit(value, comp)
            g = z - z_target[idx]
            lo[idx] = np.where(g <= 0, wa, lo[idx])
            hi[idx] = np.where(g >= 0, wa, hi[idx])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                new = wa - g * phi(z) / slope
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
        z = probit(f, 1.0 - f)
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
        pa, qb = self.p * phi(a), self.q * phi(b)
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
            zv = probit(value, comp)
            h = zv - z_tau
            ok = h >= 0
            lo[idx] = np.where(ok, ra, lo[idx])
            hi[idx] = np.where(ok, hi[idx], ra)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                new = ra - h * phi(zv) / dv_dr
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
