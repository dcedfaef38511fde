"""The one base class of every input certkit refuses to certify.

A :class:`CertkitError` means "this requirement cannot be evaluated as given": its message names the
field at fault and the fix. The pytest plugin turns one raised inside a requirement into a short test
failure (no traceback) recorded as ``error`` in the results, so the run's gate fails and no other
requirement is lost. Each subclass lives beside the concept it guards: :class:`~certkit.cases.CaseError`
(case files, prompts, images), :class:`~certkit.models.base.ModelError` (adapters and what models
return), :class:`~certkit.oracles.OracleError` (oracles and their labels) and :class:`RequirementError`
(the requirement's own numbers: edits, radius, alpha, tau, sample budgets).
"""

from __future__ import annotations

__all__ = ["CertkitError", "RequirementError"]


class CertkitError(ValueError):
    """An input certkit cannot certify; the message names the field and the fix."""


class RequirementError(CertkitError):
    """A requirement, or one of its settings, out of range or malformed (edits, radius, alpha, threshold, sample budget,
    noise, a marker's keys); one the smoothed model cannot evaluate (a radius without image noise); or one no number
    of samples within its budget can meet."""
