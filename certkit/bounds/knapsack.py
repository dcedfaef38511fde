"""Text only: the worst case over token edits is a fractional knapsack over the kernel's likelihood-ratio atoms
(reproduces Lee et al. 2019 exactly), and its inverse. numpy only."""

from __future__ import annotations

import math

import numpy as np

from ..noise import Atoms


def worst_case(p_a: np.ndarray, atoms: Atoms) -> np.ndarray:
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


def required_p_a(tau: float, atoms: Atoms) -> float:
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
