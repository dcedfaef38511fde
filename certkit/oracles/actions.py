"""Answers parsed into one action of a declared set (robot commands, tool calls, ...): :class:`ActionOracle`."""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from .base import UNPARSEABLE, Oracle, OracleErrorBound

__all__ = ["ActionOracle"]


class ActionOracle(Oracle):
    """Parse an answer into one action of a declared set (robot commands, tool calls, ...).

    ``actions`` maps each action label to the phrases that name it (the label, underscores read as spaces, is
    always one); a sequence means no other phrases. Phrases are found as whole words, case-insensitive, anywhere in
    the text; an occurrence that lies inside a longer occurrence of another action's phrase is part of that one
    (``put`` inside ``put away`` names put_away). An answer in which exactly one action is named gets that label;
    one naming none, or two different actions, is unparseable.
    """

    #: how phrases found in one answer decide its label; in :meth:`config`, so a change of rule is a new fingerprint
    RULE = "whole-word phrases; one inside a longer phrase of another action belongs to it; exactly one action named"

    name = "action"

    def __init__(self, actions: Sequence[str] | Mapping[str, Sequence[str]], error: float | OracleErrorBound = 0.0, version: str = "1"):
        if not isinstance(actions, Mapping):
            actions = {a: [] for a in actions}
        self.version = version
        super().__init__(list(actions), error)
        self.phrases = {label: sorted({label.replace("_", " "), *(str(p) for p in phrases)}, key=len, reverse=True)
                        for label, phrases in actions.items()}
        self._patterns = {
            label: re.compile(r"(?<![\w])(" + "|".join(re.escape(p) for p in phrases) + r")(?![\w])", re.IGNORECASE)
            for label, phrases in self.phrases.items()
        }

    def config(self):
        """Each action's phrases and the rule that reads them: both decide the labels."""
        return {"phrases": self.phrases, "rule": self.RULE}

    def classify(self, outputs):
        """The one action named in each output, else ``UNPARSEABLE`` (see the class docstring)."""
        return [self._named(text) for text in outputs]

    def _named(self, text: str) -> str:
        spans = [(m.start(), m.end(), label) for label, pat in self._patterns.items() for m in pat.finditer(text or "")]
        named = {label for start, end, label in spans
                 if not any(s <= start and end <= e and e - s > end - start and other != label for s, e, other in spans)}
        return named.pop() if len(named) == 1 else UNPARSEABLE
