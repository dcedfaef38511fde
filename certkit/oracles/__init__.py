"""Output oracles: turn each model output into one label of a declared set (seed 000).

Certification is of ``oracle ∘ model``. The contract every oracle keeps, its error bound and ``UNPARSEABLE`` are in
:mod:`certkit.oracles.base`; each kind of oracle has its module: :mod:`~certkit.oracles.keyword` (regex rules and the
refusal detector), :mod:`~certkit.oracles.actions`, :mod:`~certkit.oracles.semantic`, :mod:`~certkit.oracles.judge`
and :mod:`~certkit.oracles.classifier` (label outputs, any text classifier). Measuring an oracle's error from labelled
answers is :func:`certkit.calibration.calibrate`.
"""

from .actions import ActionOracle
from .base import UNPARSEABLE, Oracle, OracleError, OracleErrorBound
from .classifier import ClassifierOracle, LabelOracle
from .judge import JudgeOracle
from .keyword import KeywordOracle, right_context
from .semantic import SemanticOracle

__all__ = [
    "UNPARSEABLE",
    "OracleError",
    "OracleErrorBound",
    "Oracle",
    "LabelOracle",
    "KeywordOracle",
    "ActionOracle",
    "SemanticOracle",
    "ClassifierOracle",
    "JudgeOracle",
    "right_context",
]
