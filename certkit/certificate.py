"""The Certificate: what one certification requirement established, in a form reports and caches keep."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .requirement import Noise, Requirement

__all__ = ["Certificate", "CERTIFIED", "NOT_CERTIFIED", "INCONCLUSIVE", "ERROR", "NO_REQUIREMENT", "STATUSES", "REQUIREMENT_STATUSES"]

CERTIFIED = "certified"
NOT_CERTIFIED = "not certified"
INCONCLUSIVE = "inconclusive"
STATUSES = (CERTIFIED, NOT_CERTIFIED, INCONCLUSIVE)
#: a requirement that could not be evaluated, and a test that made no certificate (no requirement): the results' other words
ERROR = "error"
NO_REQUIREMENT = "no requirement"
REQUIREMENT_STATUSES = (*STATUSES, ERROR, NO_REQUIREMENT)


def _json_float(x: float | None):
    if x is None:
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x)


def from_json_float(x):
    """Decode a float written by :meth:`Certificate.to_dict` (``\"inf\"`` / ``\"-inf\"`` for infinite radii)."""
    if x in ("inf", "-inf"):
        return math.inf if x == "inf" else -math.inf
    return x


@dataclass(frozen=True)
class Certificate:
    """The result of one requirement: ``outcome`` certified at ``edits`` token edits and image l2 ``radius``?

    ``status`` is ``certified``, ``not certified`` (the data show p_A is below what the requirement needs)
    or ``inconclusive`` (``n_max`` samples did not settle it). ``certified`` is True only for the first.
    ``p_a_lower`` / ``p_a_upper`` bound p_A at confidence ``1 - alpha`` (the lower one already less the
    oracle's declared error); ``p_star`` is the smallest p_A that certifies; ``p_adv`` the worst case at
    ``(edits, radius)`` implied by ``p_a_lower``; ``margin`` is ``p_a_lower - p*`` in exact arithmetic against the
    exact boundary (:mod:`certkit.boundary`), rounded once: positive on every certified certificate of either mode,
    whatever the rounding of ``p_star`` and ``p_adv`` (None on records made before it). In report mode
    (``mode == "frontier"``) ``frontier[d]`` is the largest certified radius at ``d`` edits (``-inf``: none).

    ``oracle_error`` is the oracle error e subtracted; ``oracle_calibration`` the measured bound it came from
    (:meth:`certkit.calibration.OracleErrorBound.to_dict`: upper, n, mistakes, alpha, digest, kind, outcome, oracle) or
    None where e was a declared number. With a measured e at level alpha_o, the certificate holds with probability at
    least ``1 - (alpha + alpha_o)`` (:attr:`joint_alpha`, a union bound); with a declared e, with probability at least
    ``1 - alpha`` provided the oracle's error is in fact at most e.
    """

    case_id: str
    outcome: str
    edits: int
    radius: float
    threshold: float
    alpha: float
    status: str
    p_a_lower: float
    p_a_upper: float
    p_star: float
    p_adv: float
    n: int
    successes: int
    seed: int
    mode: str = "certify"
    n_max: int | None = None
    image_kernel: dict | None = None
    text_kernel: dict | None = None
    model_fingerprint: str = ""
    oracle_fingerprint: str = ""
    oracle_error: float = 0.0
    oracle_calibration: dict | None = None
    case_hash: str = ""
    label_counts: dict = field(default_factory=dict)
    frontier: tuple = ()
    timings: dict = field(default_factory=dict)
    cached: bool = False
    #: how the labels were computed (device, torch, kernel flags: :func:`certkit.models.base.runtime`); counts repeat
    #: bit for bit only on the same runtime, with deterministic algorithms on CUDA
    runtime: dict | None = None
    #: p_a_lower - p* decided exactly (certkit.boundary): the verdict's margin, positive when certified
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def certified(self) -> bool:
        """True exactly when ``status`` is ``certified``."""
        return self.status == CERTIFIED

    @property
    def joint_alpha(self) -> float:
        """The probability that the certificate is wrong, at most: ``alpha`` plus the measured oracle bound's level
        (``oracle_calibration["alpha"]``), by a union bound; ``alpha`` alone where the oracle error was declared."""
        return self.alpha + (float(self.oracle_calibration["alpha"]) if self.oracle_calibration else 0.0)

    @property
    def requirement(self) -> Requirement:
        """The requirement this certificate answers, from its fields (report mode: ``edits`` is ``max_edits`` and
        ``n_max`` the fixed ``n``; a record without ``n_max`` gets the default)."""
        n_max = {} if self.n_max is None else {"n_max": self.n_max}
        return Requirement(self.outcome, edits=self.edits, radius=self.radius, alpha=self.alpha, threshold=self.threshold, **n_max)

    @property
    def noise(self) -> Noise:
        """The noise the certificate was made under, rebuilt from ``image_kernel`` and ``text_kernel``."""
        return Noise.of_certificate({"image_kernel": self.image_kernel, "text_kernel": self.text_kernel})

    def to_dict(self) -> dict[str, Any]:
        """The certificate as JSON-ready data (results.json, the cache): every field, infinite radii as ``"inf"`` /
        ``"-inf"``, plus ``certified`` and ``joint_alpha`` (the level the certificate holds at, oracle calibration
        included). :meth:`from_dict` gives back an equal certificate."""
        d = dataclasses.asdict(self)
        for key in ("p_star", "p_adv", "radius"):
            d[key] = _json_float(d[key])
        d["frontier"] = [_json_float(r) for r in self.frontier]
        d["certified"] = self.certified
        d["joint_alpha"] = self.joint_alpha
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Certificate":
        """The certificate a :meth:`to_dict` record holds (unknown keys ignored, missing optional fields defaulted);
        a record without ``case_id``, ``outcome`` or ``status``, or with an unknown status, raises ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"case_id", "outcome", "status"} - set(data)
        if missing:
            raise ValueError(f"certificate record is missing {sorted(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("p_star", "p_adv", "radius"):
            if key in kwargs:
                kwargs[key] = from_json_float(kwargs[key])
        kwargs["frontier"] = tuple(from_json_float(r) for r in data.get("frontier", ()))
        return cls(**kwargs)
