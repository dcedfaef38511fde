"""Smoothing noise kernels as frozen value objects.

Each kernel validates its parameters on construction and, for the text kernels,
exposes the *likelihood-ratio atoms* the Neyman–Pearson certificates need.

For a text kernel and ``d`` edited token positions (the adversarial prompt
``x'`` differs from the clean prompt ``x`` in exactly ``d`` positions), the
noisy prompt ``z`` has a likelihood ratio ``gamma(z) = p(z | x') / p(z | x)``
that takes finitely many values. Positions that were not edited contribute a
ratio of 1 and drop out, so only the ``d`` edited positions matter. An
:class:`Atoms` lists each distinct value of ``log gamma`` together with its
probability mass under the clean input (``clean``) and under the adversarial
input (``adversarial``). Both mass vectors sum to 1.

This module imports no torch: sampling lives with the smoothing engine.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp, xlogy

__all__ = ["Atoms", "Gaussian", "UniformReplace", "Mask"]


@dataclass(frozen=True)
class Atoms:
    """Likelihood-ratio atoms of a text kernel for ``d`` edited positions.

    ``log_gamma`` is sorted ascending and may hold ``-inf`` (the noisy prompt
    is impossible under the adversarial input) or ``+inf`` (impossible under
    the clean input). ``clean[k]`` and ``adversarial[k]`` are the probability
    masses of atom ``k`` under the clean and the adversarial input; for every
    finite atom ``adversarial[k] == exp(log_gamma[k]) * clean[k]``.
    """

    log_gamma: np.ndarray
    clean: np.ndarray
    adversarial: np.ndarray


def _check_probability(name: str, value: object, kernel: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{kernel}.{name} must be a real number in (0, 1), got {value!r}")
    value = float(value)
    if not (0.0 < value < 1.0):
        raise ValueError(
            f"{kernel}.{name} must lie strictly between 0 and 1, got {value!r}; "
            f"{name} is the per-token probability that the kernel changes a token"
        )
    return value


def _check_edits(d: object) -> int:
    if isinstance(d, bool) or not isinstance(d, numbers.Integral) or int(d) < 0:
        raise ValueError(f"edits must be a non-negative integer number of token positions, got {d!r}")
    return int(d)


@dataclass(frozen=True)
class Gaussian:
    """Isotropic Gaussian noise ``N(0, sigma^2 I)`` added to the image.

    The certified radius is an l2 distance in the space the noise is added in:
    float pixels in [0, 1], shape (C, H, W), at the resolution the case states.
    ``sigma`` is stored as a float; TypeError for a non-number (a bool included),
    ValueError unless it is finite and > 0.
    """

    sigma: float

    def __post_init__(self) -> None:
        sigma = self.sigma
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
            raise TypeError(f"Gaussian.sigma must be a positive real number, got {sigma!r}")
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma > 0.0):
            raise ValueError(
                f"Gaussian.sigma must be a finite number > 0, got {sigma!r}; "
                "it is the standard deviation of the image noise in [0, 1] pixel units"
            )
        object.__setattr__(self, "sigma", sigma)

    def params(self) -> dict:
        """``{"kind": "gaussian", "sigma": ...}``: the kernel as JSON, recorded in certificates and hashed into cache keys."""
        return {"kind": "gaussian", "sigma": self.sigma}


@dataclass(frozen=True)
class UniformReplace:
    """Each prompt token is kept with probability ``1 - beta``; otherwise it is
    replaced by a token drawn uniformly from the *other* ``vocab_size - 1``
    tokens of the alphabet.

    Over ``d`` edited positions let ``a`` be the number of noisy tokens equal to
    the clean token and ``b`` the number equal to the adversarial token. Then
    ``gamma = rho ** (b - a)`` with ``rho = (1 - beta) (vocab_size - 1) / beta``,
    giving at most ``2 d + 1`` atoms ``k = b - a`` in ``-d..d`` with closed-form
    multinomial masses (computed in log space, exact for vocab up to 2**20 and
    beyond). TypeError or ValueError unless ``0 < beta < 1``; ValueError unless
    ``vocab_size`` is an integer >= 2.
    """

    beta: float
    vocab_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_probability("beta", self.beta, "UniformReplace"))
        v = self.vocab_size
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < 2:
            raise ValueError(
                f"UniformReplace.vocab_size must be an integer >= 2 (the size of the replacement "
                f"alphabet, special tokens excluded), got {v!r}"
            )
        object.__setattr__(self, "vocab_size", int(v))

    @property
    def log_rho(self) -> float:
        """``log rho``: the log likelihood ratio contributed by one position showing the adversarial token."""
        return math.log1p(-self.beta) + math.log(self.vocab_size - 1) - math.log(self.beta)

    def params(self) -> dict:
        """``{"kind": "uniform_replace", "beta": ..., "vocab_size": ...}``: the kernel as JSON (certificates, cache keys)."""
        return {"kind": "uniform_replace", "beta": self.beta, "vocab_size": self.vocab_size}

    def atoms(self, d: int) -> Atoms:
        """The likelihood-ratio atoms for ``d`` edited positions, sorted and all finite: at most ``2 d + 1`` (atoms of
        no mass left out: ``d + 1`` when ``vocab_size == 2``), one atom ``log gamma = 0`` of mass 1 at ``d = 0`` or
        ``rho = 1``. Each mass vector is normalised to sum to 1. ValueError unless ``d`` is a non-negative integer."""
        d = _check_edits(d)
        if d == 0 or self.log_rho == 0.0:  # rho = 1: the noisy prompt says nothing about the edit
            one = np.ones(1)
            return Atoms(np.zeros(1), one, one.copy())
        beta, v = self.beta, self.vocab_size
        log_keep = math.log1p(-beta)
        log_one_other = math.log(beta) - math.log(v - 1)  # one specific other token
        other = beta * (v - 2) / (v - 1)  # any token that is neither x_i nor x'_i
        ks = np.arange(-d, d + 1)
        a = np.arange(0, d + 1)
        # b = a + k, c = d - a - b must be >= 0
        A, K = np.meshgrid(a, ks, indexing="xy")
        B = A + K
        C = d - A - B
        valid = (B >= 0) & (C >= 0)
        Bc = np.where(valid, B, 0)
        Cc = np.where(valid, C, 0)
        log_multinomial = gammaln(d + 1) - gammaln(A + 1) - gammaln(Bc + 1) - gammaln(Cc + 1)
        log_terms = log_multinomial + A * log_keep + Bc * log_one_other + xlogy(Cc, other)
        log_terms = np.where(valid, log_terms, -np.inf)
        log_clean = logsumexp(log_terms, axis=1)
        keep = np.isfinite(log_clean)
        ks, log_clean = ks[keep], log_clean[keep]
        log_gamma = ks * self.log_rho
        clean = np.exp(log_clean)
        # symmetry of the kernel: the adversarial mass of atom k is the clean mass of atom -k
        # (the kept k form a symmetric set)
        adversarial = np.exp(log_clean[::-1])
        order = np.argsort(log_gamma, kind="stable")
        clean, adversarial = clean[order], adversarial[order]
        return Atoms(log_gamma[order], clean / clean.sum(), adversarial / adversarial.sum())


@dataclass(frozen=True)
class Mask:
    """Each prompt token is replaced by the mask token with probability ``beta``.

    Over ``d`` edited positions the ratio is 0 if any edited position shows the
    clean token (clean mass ``1 - beta**d``), 1 if all are masked (mass
    ``beta**d`` under both inputs), and infinite if any shows the adversarial
    token (adversarial mass ``1 - beta**d``). TypeError or ValueError unless ``0 < beta < 1``.
    """

    beta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_probability("beta", self.beta, "Mask"))

    def params(self) -> dict:
        """``{"kind": "mask", "beta": ...}``: the kernel as JSON (certificates, cache keys)."""
        return {"kind": "mask", "beta": self.beta}

    def atoms(self, d: int) -> Atoms:
        """The three atoms ``log gamma = -inf, 0, +inf`` for ``d`` edited positions (one atom ``0`` of mass 1 at
        ``d = 0``), with the masses of the class docstring. ValueError unless ``d`` is a non-negative integer."""
        d = _check_edits(d)
        if d == 0:
            one = np.ones(1)
            return Atoms(np.zeros(1), one, one.copy())
        all_masked = self.beta**d
        seen = -math.expm1(d * math.log(self.beta))  # 1 - beta**d without cancellation
        return Atoms(
            np.array([-np.inf, 0.0, np.inf]),
            np.array([seen, all_masked, 0.0]),
            np.array([0.0, all_masked, seen]),
        )
