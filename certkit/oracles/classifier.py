"""Oracles whose classifier already names the label: :class:`LabelOracle` (a classifier model's output is the label)
and :class:`ClassifierOracle` (any text classifier, e.g. a guard model's pipeline)."""

from __future__ import annotations

from typing import Callable, Sequence

from .base import UNPARSEABLE, Oracle, OracleError, OracleErrorBound

__all__ = ["LabelOracle", "ClassifierOracle"]


class LabelOracle(Oracle):
    """For classifiers: the output already is the label; anything else is unparseable."""

    name = "label"

    def classify(self, outputs):
        """Each output that equals a declared label exactly, else ``UNPARSEABLE``."""
        allowed = set(self.labels)
        return [o if o in allowed else UNPARSEABLE for o in outputs]


class ClassifierOracle(Oracle):
    """Wrap any text classifier: ``classify(texts) -> labels`` (e.g. a guard model's pipeline). Its labels are checked
    like any oracle's: a label outside ``labels`` (and UNPARSEABLE) is an :class:`OracleError`. Nothing of the
    function goes into the fingerprint: change ``version`` whenever it changes."""

    def __init__(self, classify: Callable[[list[str]], Sequence[str]], labels: Sequence[str], name: str, version: str = "1",
                 error: float | OracleErrorBound = 0.0):
        if not callable(classify):
            raise OracleError("ClassifierOracle.classify must be callable: texts -> labels")
        self.name = name
        self.version = version
        super().__init__(labels, error)
        self._classify = classify

    def classify(self, outputs):
        """What the wrapped function returns for the outputs, as a list."""
        return list(self._classify(list(outputs)))
