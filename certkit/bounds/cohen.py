"""Image only (Cohen et al. 2019): the closed forms for Gaussian noise of scale ``sigma`` at image l2 radius ``r``,
and the normal-scale helpers the hybrid solver shares. numpy/scipy only."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def probit(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``Phi^-1(p)`` given ``p`` and its complement ``q = 1 - p`` (both accurate)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q < 0.5, -ndtri(q), ndtri(p))


def phi(z: np.ndarray) -> np.ndarray:
    """The standard normal density at ``z``."""
    return np.exp(-0.5 * z * z) / _SQRT_2PI


def worst_case(p_a, radius, sigma):
    """``Phi(Phi^-1(p_a) - r / sigma)``, clipped to [0, 1]; 1 where ``p_a = 1``, an infinite radius included."""
    z = probit(p_a, 1.0 - p_a)
    with np.errstate(invalid="ignore"):  # p_a = 1 at an infinite radius: inf - inf, decided by the where
        return np.where(np.isposinf(z), 1.0, np.clip(ndtr(z - radius / sigma), 0.0, 1.0))


def max_radius(p_a, tau, sigma):
    """``sigma (Phi^-1(p_a) - Phi^-1(tau))``: the radius at which :func:`worst_case` reaches ``tau`` (any sign)."""
    return sigma * (probit(p_a, 1.0 - p_a) - ndtri(tau))


def required_p_a(tau, radius, sigma):
    """``Phi(Phi^-1(tau) + r / sigma)``: the clean probability whose :func:`worst_case` at ``radius`` is ``tau``."""
    return ndtr(ndtri(tau) + radius / sigma)
