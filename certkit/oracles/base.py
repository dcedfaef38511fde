"""The oracle contract: an oracle turns each model output into one label of a declared set.

Every oracle has a stable ``name`` and ``version`` (they go into reports and cache keys, so change the version whenever
the oracle's behaviour changes), a declared set of ``labels``, and an optional error bound ``error``, which the
certificate subtracts from p_A's lower bound: either a number the user declares, or an :class:`OracleErrorBound`
measured by :func:`certkit.calibration.calibrate` from answers people labelled (see :mod:`certkit.calibration` for
which error and why). ``UNPARSEABLE`` is always a possible label and always counts *against* the target outcome. An
oracle may decide a label from a prefix of an answer (:meth:`Oracle.decide_prefix`), so generation can stop early.

The value is :class:`OracleErrorBound`, not ``OracleError``: that name is the exception (a misconfigured or
misbehaving oracle), raised throughout certkit and caught by users, and the value is a bound on an error *rate*.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import CertkitError
from ..requirement import unit_interval

__all__ = ["UNPARSEABLE", "OracleError", "OracleErrorBound", "Oracle", "FALSE_OUTCOME", "DISAGREEMENT", "KINDS", "cp_upper"]

UNPARSEABLE = "unparseable"


class OracleError(CertkitError):
    """An oracle misconfigured or misbehaving (e.g. a label outside its declared set), or an error bound that cannot be
    used (:mod:`certkit.calibration`)."""


#: the bound's kind: the rate at which the oracle says the certified outcome while the truth is another label
FALSE_OUTCOME = "false_outcome"
#: the bound's kind: the rate at which the oracle's label is not the true one (bounds every outcome's false rate)
DISAGREEMENT = "disagreement"
KINDS = (FALSE_OUTCOME, DISAGREEMENT)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OracleError(f"OracleErrorBound.{name} must be a whole number, got {value!r}")
    return int(value)


def cp_upper(mistakes: int, n: int, alpha: float) -> float:
    """The one-sided Clopper–Pearson upper bound at level ``alpha`` on a rate from ``mistakes`` in ``n``."""
    from ..stats import clopper_pearson

    return float(clopper_pearson(int(mistakes), int(n), float(alpha))[1])


@dataclass(frozen=True, kw_only=True)
class OracleErrorBound:
    """A measured upper bound on an oracle's error rate: give it to an oracle as ``error=`` instead of a number.

    ``upper`` is the one-sided Clopper–Pearson upper bound at level ``alpha`` on the rate of ``kind`` from ``mistakes``
    in ``n`` labelled answers: ``P[rate > upper] <= alpha``. ``kind`` is ``"false_outcome"`` (the oracle says
    ``outcome`` where the truth is another label: what a certificate of ``outcome`` needs) or ``"disagreement"`` (the
    oracle's label is not the true one: looser, and good for every outcome; ``outcome`` None). ``digest`` is
    ``sha256:`` and the hex digest of the labelled set (:func:`certkit.calibration.calibrate`); ``oracle`` the behaviour fingerprint of
    the oracle that labelled it (:attr:`certkit.oracles.Oracle.behaviour`), which an oracle given this bound must
    have. A certificate that subtracts ``upper`` holds with probability at least ``1 - (alpha_c + alpha)`` for its
    own level ``alpha_c`` (:meth:`joint_alpha`).

    Checked on construction: :class:`~certkit.oracles.OracleError` for counts that are not whole numbers with
    ``0 <= mistakes <= n``, ``n >= 1``, ``alpha`` outside (0, 1), an unknown kind, a false-outcome bound without its
    outcome (or a disagreement bound with one), a malformed digest, and an ``upper`` that is not the Clopper–Pearson
    bound of the counts (so a pasted line cannot claim a smaller error than its counts show; ``upper`` is kept
    exactly as computed)."""

    upper: float
    mistakes: int
    n: int
    alpha: float
    digest: str
    kind: str = FALSE_OUTCOME
    outcome: str | None = None
    oracle: str = ""

    def __post_init__(self) -> None:
        mistakes, n = _count("mistakes", self.mistakes), _count("n", self.n)
        if n < 1 or not 0 <= mistakes <= n:
            raise OracleError(f"OracleErrorBound needs n >= 1 labelled answers and 0 <= mistakes <= n, got mistakes={mistakes}, n={n}")
        why = unit_interval("alpha", self.alpha)
        if why:
            raise OracleError(f"OracleErrorBound.{why}, got {self.alpha!r}")
        if self.kind not in KINDS:
            raise OracleError(f"OracleErrorBound.kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.kind == FALSE_OUTCOME and (not isinstance(self.outcome, str) or not self.outcome):
            raise OracleError("OracleErrorBound of kind 'false_outcome' needs the outcome it was measured for: outcome='...'")
        if self.kind == DISAGREEMENT and self.outcome is not None:
            raise OracleError(f"OracleErrorBound of kind 'disagreement' bounds every outcome: leave outcome out, got {self.outcome!r}")
        hexpart = self.digest[7:] if isinstance(self.digest, str) and self.digest.startswith("sha256:") else ""
        if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
            raise OracleError(f"OracleErrorBound.digest must be 'sha256:' and 64 hex digits (the labelled set's, from calibrate), "
                              f"got {self.digest!r}")
        if not isinstance(self.oracle, str):
            raise OracleError(f"OracleErrorBound.oracle must be the calibrated oracle's behaviour fingerprint (text), got {self.oracle!r}")
        exact = cp_upper(mistakes, n, float(self.alpha))
        given = self.upper
        close = isinstance(given, numbers.Real) and not isinstance(given, bool) and math.isclose(float(given), exact, rel_tol=1e-9,
                                                                                                 abs_tol=1e-12)
        if not close:
            raise OracleError(f"OracleErrorBound.upper = {given!r} is not the Clopper-Pearson upper bound of {mistakes} mistakes in {n} "
                              f"answers at alpha {self.alpha!r}, which is {exact!r}: give the counts as calibrate() returned them")
        for name, value in (("upper", exact), ("mistakes", mistakes), ("n", n), ("alpha", float(self.alpha))):
            object.__setattr__(self, name, value)

    def covers(self, outcome: str) -> bool:
        """Whether this bound is one a certificate of ``outcome`` may subtract: a disagreement bound covers every outcome,
        a false-outcome bound only its own."""
        return self.kind == DISAGREEMENT or outcome == self.outcome

    def joint_alpha(self, alpha: float) -> float:
        """The level of a certificate made at ``alpha`` with this bound subtracted: ``alpha + self.alpha`` (union bound)."""
        return float(alpha) + self.alpha

    def to_dict(self) -> dict[str, Any]:
        """The bound as a certificate records it (``oracle_calibration``): upper, n, mistakes, alpha, digest, kind, outcome
        and oracle. :meth:`from_dict` gives back an equal bound."""
        return {"upper": self.upper, "n": self.n, "mistakes": self.mistakes, "alpha": self.alpha, "digest": self.digest,
                "kind": self.kind, "outcome": self.outcome, "oracle": self.oracle}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OracleErrorBound":
        """The bound a :meth:`to_dict` record holds (checked as on construction; unknown keys ignored)."""
        names = ("upper", "mistakes", "n", "alpha", "digest", "kind", "outcome", "oracle")
        return cls(**{k: data[k] for k in names if k in data})

    def describe(self) -> str:
        """One line: what is bounded, by how much, from what, at which level."""
        what = f"false-{self.outcome!r} rate" if self.kind == FALSE_OUTCOME else "disagreement rate"
        return (f"oracle {what} <= {self.upper:.6g} at alpha_o = {self.alpha:g} "
                f"({self.mistakes} mistake(s) in {self.n} labelled answers, one-sided Clopper-Pearson; {self.digest[:19]}...)")

    def code(self) -> str:
        """The Python expression that rebuilds this bound, to paste as an oracle's ``error=`` in a conftest.py."""
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if not (k == "outcome" and v is None))
        return f"certkit.oracles.OracleErrorBound({fields})"


class Oracle:
    """Base class: subclasses set ``name``, ``version``, ``labels`` and implement :meth:`classify`.

    ``labels`` must be distinct and name an outcome besides ``UNPARSEABLE`` (:class:`OracleError` otherwise);
    ``UNPARSEABLE`` among them is dropped (it is always a label). ``error`` is a declared fraction in [0, 1) or a
    measured :class:`OracleErrorBound` whose ``upper`` is below 1 (:class:`OracleError`
    otherwise): :attr:`error` is the number subtracted (the bound's ``upper``), :attr:`calibration` the measured bound
    (None for a declared number)."""

    name: str = "oracle"
    version: str = "1"

    def __init__(self, labels: Sequence[str], error: float | OracleErrorBound = 0.0):
        given = tuple(str(label) for label in labels)
        labels = tuple(label for label in given if label != UNPARSEABLE)  # always a label, never a declared one
        if not labels or len(set(labels)) != len(labels):
            raise OracleError(f"{self.name}: labels must be distinct and name at least one outcome besides {UNPARSEABLE!r}, "
                              f"got {given!r}")
        self.calibration = error if isinstance(error, OracleErrorBound) else None
        if self.calibration is not None:
            error = self.calibration.upper
            if error >= 1.0:
                raise OracleError(f"{self.name}: the measured error bound is {error!r} ({self.calibration.mistakes} mistakes in "
                                  f"{self.calibration.n}); no certificate can subtract it: fix the oracle")
        if isinstance(error, bool) or not isinstance(error, (int, float)) or not (0.0 <= float(error) < 1.0) or math.isnan(error):
            raise OracleError(f"{self.name}: error must be a fraction in [0, 1) or a certkit.oracles.OracleErrorBound, got {error!r}")
        self.labels = labels
        self.error = float(error)

    @property
    def all_labels(self) -> tuple[str, ...]:
        """The declared labels in their order, then ``UNPARSEABLE``: every label a call may return (label indices in
        the count cache are positions in this tuple)."""
        return (*self.labels, UNPARSEABLE)

    def config(self) -> dict:
        """What, besides name and version, determines the oracle's behaviour (part of its fingerprint)."""
        return {}

    @property
    def fingerprint(self) -> str:
        """``name@version:`` and 16 hex digits of a SHA-256 over name, version, labels, error, the measured bound (where
        there is one: its counts, level, kind and digest) and :meth:`config`: a change to any of them is another oracle
        to the count cache. An oracle with a declared number has the fingerprint it always had."""
        measured = {} if self.calibration is None else {"calibration": self.calibration.to_dict()}
        payload = json.dumps({"name": self.name, "version": self.version, "labels": self.labels, "error": self.error, **measured,
                              **self.config()}, sort_keys=True, default=str)
        return f"{self.name}@{self.version}:" + hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def behaviour(self) -> str:
        """``name@version:`` and 16 hex digits of a SHA-256 over what decides the labels alone (name, version, labels and
        :meth:`config`; not the error): what a measured bound names as the oracle it was measured on."""
        payload = json.dumps({"name": self.name, "version": self.version, "labels": self.labels, **self.config()}, sort_keys=True,
                             default=str)
        return f"{self.name}@{self.version}:" + hashlib.sha256(payload.encode()).hexdigest()[:16]

    def check_outcome(self, outcome: str, calibrating: bool = False) -> str:
        """``outcome`` itself if it is one of :attr:`labels`; :class:`OracleError` otherwise, ``UNPARSEABLE`` included
        (it always counts against the target, so it cannot be one). Unless ``calibrating``, a measured error bound must
        serve a certificate of ``outcome``: measured on this oracle (its :attr:`behaviour`), for this outcome or for
        every one (a disagreement bound); :class:`OracleError` naming the fix otherwise."""
        if outcome == UNPARSEABLE:
            raise OracleError(f"outcome {outcome!r} cannot be certified: unparseable outputs always count against the target")
        if outcome not in self.labels:
            raise OracleError(f"unknown outcome label {outcome!r} for oracle {self.name}; its labels are {list(self.labels)}")
        bound = self.calibration
        if bound is not None and not calibrating:
            if bound.oracle != self.behaviour:
                raise OracleError(f"oracle {self.name}: its error bound was measured on oracle {bound.oracle or '(not named)'}, "
                                  f"and this one is {self.behaviour} (its rules, labels or version differ); calibrate this oracle")
            if not bound.covers(outcome):
                raise OracleError(f"oracle {self.name}: its error bound is the false-{bound.outcome!r} rate, which a certificate of "
                                  f"{outcome!r} cannot use; calibrate with outcome={outcome!r} (or without an outcome, for the "
                                  "disagreement rate that serves every outcome)")
        return outcome

    def classify(self, outputs: Sequence[str]) -> list[str]:
        """One label of :attr:`all_labels` per output, in order (what a subclass implements; call the oracle itself,
        which checks the answer)."""
        raise NotImplementedError

    #: True for oracles that judge each output together with the request it answers (see :class:`JudgeOracle`)
    needs_request: bool = False

    def decide_prefix(self, prefix: str) -> str | None:
        """A label ``L`` such that ``self([prefix + s]) == [L]`` for EVERY string ``s``, or None (undecided).

        Generation may stop once the answer so far is decided: the full answer's label is then ``L`` whatever the model
        would have written next, and so is the stopped answer's. The base class never decides (None is always exact);
        an oracle overrides this only where it proves the guarantee, and sets :attr:`decides_prefixes`. An oracle that
        ``needs_request`` never decides here (the request is not passed)."""
        return None

    #: True where :meth:`decide_prefix` may return a label (generation then may stop early); False: it always returns None
    decides_prefixes: bool = False

    def __call__(self, outputs: Sequence[str], request=None) -> list[str]:
        """The labels of ``outputs``: exactly one per output, in order, each in :attr:`all_labels`; anything else
        :meth:`classify` returns is an :class:`OracleError`, never a guess. An oracle that ``needs_request`` takes the
        case as ``request`` (OracleError without it)."""
        if self.needs_request:
            if request is None:
                raise OracleError(f"oracle {self.name} judges answers together with their request; call it with request=case")
            labels = list(self.classify(list(outputs), request))
        else:
            labels = list(self.classify(list(outputs)))
        if len(labels) != len(outputs):
            raise OracleError(f"oracle {self.name} returned {len(labels)} labels for {len(outputs)} outputs")
        allowed = set(self.all_labels)
        for label in labels:
            if label not in allowed:
                raise OracleError(f"oracle {self.name} returned label {label!r}, outside its declared set {list(self.all_labels)}")
        return labels
