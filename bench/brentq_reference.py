"""A straightforward scalar implementation of the hybrid certificate, the way the paper's code does it.

Nested scipy ``brentq``: the inner root ``F(t*; r) = p_A`` in ``u = log t``, the outer root
``p_adv(r) = tau`` in ``r``. One (p_A, d) at a time, written independently of ``certkit.bounds``
(own atom enumeration, no shared helpers) so that it can serve as a cross-check.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import norm


def uniform_atoms(beta: float, vocab: int, d: int):
    """(log_gamma, clean, adversarial) by summing the multinomial over (a, b, c) directly."""
    keep, one_other, other = 1 - beta, beta / (vocab - 1), beta * (vocab - 2) / (vocab - 1)
    log_rho = math.log(keep * (vocab - 1) / beta)
    atoms = {}
    for a in range(d + 1):
        for b in range(d + 1 - a):
            c = d - a - b
            mass = math.comb(d, a) * math.comb(d - a, b) * keep**a * one_other**b * (other**c if c else 1.0)
            k = b - a
            atoms[k] = atoms.get(k, 0.0) + mass
    ks = sorted(atoms)
    return [k * log_rho for k in ks], [atoms[k] for k in ks], [atoms[-k] for k in ks]


def p_adv(p_a: float, sigma: float, r: float, atoms) -> float:
    lg, p, q = atoms

    def F(u):
        return sum(pk * norm.cdf((r * r / 2 + sigma**2 * (u - g)) / (sigma * r)) for g, pk in zip(lg, p)) - p_a

    lo, hi = min(lg) - 50 - 50 * r / sigma, max(lg) + 50 + 50 * r / sigma
    u = brentq(F, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=500)
    return sum(qk * norm.cdf((r * r / 2 + sigma**2 * (u - g)) / (sigma * r) - r / sigma) for g, qk in zip(lg, q))


def max_radius(p_a: float, sigma: float, beta: float, vocab: int, d: int, tau: float) -> float:
    """Largest r with p_adv(r) >= tau, -inf if not certified as r -> 0 (checked at r = 1e-9)."""
    atoms = uniform_atoms(beta, vocab, d)

    def g(r):
        return p_adv(p_a, sigma, r, atoms) - tau

    if g(1e-9) < 0:
        return -math.inf
    hi = sigma * (norm.ppf(p_a) - norm.ppf(tau)) + 1e-9
    if g(hi) >= 0:
        return hi
    return brentq(g, 1e-9, hi, xtol=1e-13, rtol=1e-13, maxiter=500)
