"""What a run certifies: a :class:`Requirement` (outcome, edits, radius, alpha, threshold, n_max) and its
:class:`Noise` (sigma, beta, kernel, vocabulary), with each setting defined once in :data:`SETTINGS`.

Every setting a user can give (a ``--certkit-*`` option, a ``certkit_*`` ini key, a ``certkit(...)`` marker key,
a ``certkit plan``/``bounds`` flag) is one :class:`Setting` row: its name, type, default, help text and check. The
pytest options, ini keys and marker validation, the command line's defaults and the report's table captions
(:func:`caption`, from the values :func:`of_certificate` reads back from a results record) are generated from the
table, so adding a setting is adding a row. A check returns the error text (``None`` when the value is good); callers name
where the value came from.

This module imports no torch: it is maths-level, beside :mod:`certkit.noise`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .errors import RequirementError

if TYPE_CHECKING:
    from .noise import Gaussian, Mask, UniformReplace

__all__ = ["Setting", "SETTINGS", "BY_NAME", "Noise", "Requirement", "unit_interval", "positive_integer", "SMALLEST_PROBABILITY",
           "of_certificate", "caption"]

#: the smallest alpha or threshold a requirement takes: below it double precision cannot carry the test's numbers
SMALLEST_PROBABILITY = 1e-300


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def unit_interval(name: str, value, smallest: float = 0.0) -> str | None:
    """The error text when ``value`` is not a real number strictly between ``smallest`` and 1 (None when it is)."""
    if _real(value) and smallest < float(value) < 1.0:
        return None
    floor = f" (and be at least {smallest:g}, below which double precision cannot carry it)" if smallest else ""
    return f"{name} must lie strictly between 0 and 1{floor}"


def positive_integer(name: str, value) -> str | None:
    """The error text when ``value`` is not an integer >= 1 (a bool is no integer here); None when it is."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1:
        return None
    return f"{name} must be a positive integer"


def _positive_finite(value) -> bool:
    return _real(value) and value > 0 and math.isfinite(value)


@dataclass(frozen=True)
class Setting:
    """One setting: ``name``, the ``type`` its text converts to, its ``default``, its ``help`` text, its ``check`` (a
    converted value -> the error text, or None when the value is good; None is always accepted as "not given") and its
    ``shown`` phrase in a report caption (the settings a certificate was made under, by name -> the phrase, or None
    where the phrase adds nothing; a setting without ``shown`` is not a property of a certificate)."""

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], str | None] = lambda value: None
    shown: Callable[[dict], str | None] | None = None

    def error(self, value) -> str | None:
        """Why ``value`` is no good for this setting (None: it is, or it is None, "not given")."""
        return None if value is None else self.check(value)


def _number(value) -> str:
    """A setting's number as a caption shows it: four significant digits (results.json keeps it exact)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _text_kernel_shown(v: dict) -> str | None:
    if not v["beta"]:
        return None
    return "mask kernel" if v["kernel"] == "mask" else f"uniform replacement over {v['vocab']} tokens"


#: the requirement and noise settings, in the order options, help and report captions show them
SETTINGS: tuple[Setting, ...] = (
    Setting("outcome", str, None, "default target outcome label", shown=lambda v: f"outcome {v['outcome']}"),
    Setting("threshold", float, 0.5, "threshold tau on the worst-case probability of the outcome",
            lambda v: unit_interval("threshold", v), lambda v: f"tau {_number(v['threshold'])}"),
    Setting("sigma", float, 0.25, "image Gaussian noise std in [0, 1] pixel units",
            lambda v: None if _positive_finite(v) else "sigma must be > 0",
            lambda v: "no image noise" if v["sigma"] is None else f"sigma {_number(v['sigma'])}"),
    Setting("beta", float, 0.25, "per-token replacement (or mask) probability of the text kernel; 0 = no text noise",
            lambda v: None if _real(v) and 0 <= v < 1 else "beta must lie in [0, 1) (0 turns text noise off)",
            lambda v: f"beta {_number(v['beta'])}" if v["beta"] else "beta 0 (no text noise)"),
    Setting("kernel", str, "uniform", "text kernel: uniform or mask",
            lambda v: None if v in ("uniform", "mask") else "kernel must be 'uniform' or 'mask'", _text_kernel_shown),
    Setting("alpha", float, 0.01, "false-certification rate per requirement", lambda v: unit_interval("alpha", v),
            lambda v: f"alpha {_number(v['alpha'])}"),
    Setting("n_max", int, 10_000, "sample cap of the sequential test", lambda v: positive_integer("n_max", v),
            lambda v: f"n_max {v['n_max']}"),
    Setting("timeout", float, None, "seconds one requirement may take; past it the requirement is an error (a hung model call)",
            lambda v: None if _positive_finite(v) else "timeout must be a positive number of seconds"),
)
#: the table by name
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def _refuse(why: str | None, value) -> None:
    if why is not None:
        raise RequirementError(f"{why}, got {value!r}")


@dataclass(frozen=True)
class Noise:
    """The smoothing noise of a run: image Gaussian ``sigma`` (None: no image noise), text kernel ``kernel``
    (``uniform`` or ``mask``) with per-token probability ``beta`` (0: no text noise) over a ``vocab``-token
    replacement alphabet (the uniform kernel's; None until a model fixes it). Checked on construction with the
    :data:`SETTINGS` checks (a bad field raises :class:`~certkit.errors.RequirementError` naming it); the kernels
    certkit.noise certifies with are built from it here and nowhere else."""

    sigma: float | None = BY_NAME["sigma"].default
    beta: float = BY_NAME["beta"].default
    kernel: str = BY_NAME["kernel"].default
    vocab: int | None = None

    def __post_init__(self) -> None:
        for name in ("sigma", "beta", "kernel"):
            _refuse(BY_NAME[name].error(getattr(self, name)), getattr(self, name))
        if self.beta is None:
            raise RequirementError("beta must lie in [0, 1) (0 turns text noise off), got None")
        if self.vocab is not None:
            _refuse(None if isinstance(self.vocab, numbers.Integral) and not isinstance(self.vocab, bool) and self.vocab >= 2
                    else "vocab must be an integer >= 2 (the replacement alphabet's size)", self.vocab)

    def image(self) -> Gaussian | None:
        """The image kernel: ``Gaussian(sigma)``, or None without image noise."""
        from .noise import Gaussian  # here, not at the top: the pytest plugin reads this table without scipy

        return None if self.sigma is None else Gaussian(self.sigma)

    def text(self) -> UniformReplace | Mask | None:
        """The text kernel: ``Mask(beta)``, ``UniformReplace(beta, vocab)``, or None where ``beta`` is 0. The uniform
        kernel needs ``vocab``."""
        from .noise import Mask, UniformReplace

        if not self.beta:
            return None
        if self.kernel == "mask":
            return Mask(self.beta)
        if self.vocab is None:
            raise RequirementError("the uniform text kernel needs vocab, the replacement alphabet's size")
        return UniformReplace(self.beta, self.vocab)

    @classmethod
    def of_certificate(cls, d: dict) -> "Noise":
        """The noise a certificate (its ``to_dict()``, or a results file's record of it) was made under, from its
        ``image_kernel`` and ``text_kernel``. A record whose kernels cannot be read raises KeyError, TypeError or
        ValueError (RequirementError is one)."""
        image = d.get("image_kernel") or {}
        text = d.get("text_kernel") or {}
        sigma = image["sigma"] if image else None
        if not text:
            return cls(sigma, 0.0)
        if text.get("kind") == "uniform_replace":
            return cls(sigma, text["beta"], "uniform", text["vocab_size"])
        return cls(sigma, text["beta"], "mask")


@dataclass(frozen=True)
class Requirement:
    """One certification requirement: ``outcome`` holds for every input within ``edits`` token edits and image
    l2 ``radius``, certified with false-certification rate at most ``alpha`` when the worst-case probability of
    the outcome is at least ``threshold``, deciding within ``n_max`` samples.

    Checked on construction (a bad field raises :class:`~certkit.errors.RequirementError` naming it, with the
    value); the numbers are normalised (``edits`` and ``n_max`` to int, ``radius``, ``alpha`` and ``threshold``
    to float). Whether the outcome is one of the oracle's labels, and whether the noise can reach ``edits`` and
    ``radius``, are the smoothed model's checks."""

    outcome: str
    edits: int = 0
    radius: float = 0.0
    alpha: float = BY_NAME["alpha"].default
    threshold: float = BY_NAME["threshold"].default
    n_max: int = BY_NAME["n_max"].default

    def __post_init__(self) -> None:
        if not isinstance(self.outcome, str):
            raise RequirementError(f"outcome must be an outcome label (text), got {self.outcome!r}")
        edits, radius = self.edits, self.radius
        if isinstance(edits, bool) or not isinstance(edits, numbers.Integral) or edits < 0:
            raise RequirementError(f"edits must be a non-negative integer number of token positions, got {edits!r}")
        if not _real(radius) or not math.isfinite(radius) or radius < 0:
            raise RequirementError(f"radius must be a finite, non-negative image l2 distance, got {radius!r}")
        for name in ("alpha", "threshold"):
            _refuse(unit_interval(name, getattr(self, name), SMALLEST_PROBABILITY), getattr(self, name))
        _refuse(positive_integer("n_max", self.n_max), self.n_max)
        for name, kind in (("edits", int), ("radius", float), ("alpha", float), ("threshold", float), ("n_max", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))


def of_certificate(record: dict) -> dict:
    """The settings a certificate was made under, read from its record (``Certificate.to_dict()`` or a results file's
    copy): each :data:`SETTINGS` name that is a property of a certificate (one with ``shown``) -> its value, plus
    ``vocab`` (the uniform kernel's alphabet). The noise fields come from :meth:`Noise.of_certificate`, so a record
    whose kernels cannot be read raises KeyError, TypeError or ValueError."""
    noise = Noise.of_certificate(record)
    values = {"vocab": noise.vocab}
    for setting in SETTINGS:
        if setting.shown is not None:
            values[setting.name] = getattr(noise, setting.name) if hasattr(noise, setting.name) else record.get(setting.name)
    return values


def caption(values: dict) -> list[str]:
    """The phrases a report caption shows for the settings in ``values`` (as :func:`of_certificate` returns them, or a
    part of that: a setting not in ``values`` is not shown), in table order; a phrase that would add nothing (the kernel
    without text noise) is left out."""
    return [phrase for setting in SETTINGS
            if setting.shown is not None and setting.name in values and (phrase := setting.shown(values)) is not None]
