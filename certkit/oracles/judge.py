"""A judge model reads each answer together with the request it answers: :class:`JudgeOracle`."""

from __future__ import annotations

import re

from .base import UNPARSEABLE, Oracle, OracleError, OracleErrorBound

__all__ = ["JudgeOracle"]


class JudgeOracle(Oracle):
    """Judges each answer together with the request it answers, the way a guard model classifies a conversation.

    ``judge`` is any certkit model adapter in label mode: a guard VLM (``VisionLanguageModel(..., labels=...)``,
    e.g. Llama Guard 3 Vision or LlavaGuard with its policy in ``prompt_format``) or a ``TorchClassifier``. For
    each answer it reads ``template`` with ``{prompt}`` and ``{answer}`` filled in, and the case's image; the
    label it returns is the oracle's label. Its ``error`` (declared, or measured by :func:`calibrate` on answers
    given with their requests) is subtracted from p_A's lower bound as for any oracle.

    Threat model: the judge sees the *audited* request, the case's clean prompt and image, never the noisy or
    adversarial one. For one requirement it is therefore a fixed function of the answer, so the certificate of
    ``judge ∘ model`` holds as for any other oracle. Identical answers to one case are judged once (a memo of up to
    ``memo_size`` answers, emptied when full). :class:`OracleError` for a judge that is not a label-mode adapter or a
    template without ``{answer}``.
    """

    name = "judge"
    needs_request = True

    def __init__(self, judge, template: str = "User: {prompt}\nAssistant: {answer}", error: float | OracleErrorBound = 0.0,
                 version: str = "1", memo_size: int = 65_536):
        if getattr(judge, "output_kind", None) != "label" or not hasattr(judge, "encode") or not hasattr(judge, "run"):
            raise OracleError("judge must be a certkit model adapter that outputs labels: VisionLanguageModel(..., labels={...}) "
                              "or TorchClassifier")
        if not isinstance(template, str) or "{answer}" not in template:
            raise OracleError(f"template must contain '{{answer}}' (and usually '{{prompt}}'), got {template!r}")
        self.version = version
        super().__init__(judge.labels, error)
        self.judge = judge
        self.template = template
        self._memo: dict = {}
        self._memo_size = int(memo_size)
        from ..models.base import takes_encoded

        self._run_takes_encoded = takes_encoded(judge)

    def config(self):
        """The judge's fingerprint and the template: both decide the labels."""
        return {"judge": self.judge.fingerprint, "template": self.template}

    def _conversation(self, request, answer: str) -> tuple[str, list[tuple[int, int, str]]]:
        """The template with the request's prompt and the answer filled in (each placed once, so a prompt that
        holds the text "{answer}" is not rewritten), and the character span of each part: what a word the judge's
        tokenizer cannot spell is blamed on."""
        text, spans = "", []
        for part in re.split(r"(\{prompt\}|\{answer\})", self.template):
            what = {"{prompt}": "the request's prompt", "{answer}": "the answer being judged"}.get(part, "the judge template")
            part = {"{prompt}": request.prompt, "{answer}": answer}.get(part, part)
            spans.append((len(text), len(text) + len(part), what))
            text += part
        return text, spans

    def _judge(self, request, answer: str) -> str:
        from ..cases import Case
        from ..models.base import UnspellableText

        text, spans = self._conversation(request, answer)
        try:
            enc = self.judge.encode(Case(f"{request.id}/judge", text, request.image))
        except UnspellableText as exc:
            where = next((what for a, b, what in spans if a <= exc.start < b), "the judge template")
            fix = "rephrase the template with words the judge knows" if where == "the judge template" else "the judge cannot read it"
            raise OracleError(f"case {request.id!r}: the word {exc.text!r} in {where} cannot be spelled by the judge's tokenizer "
                              f"(it reads it as its unknown token); {fix}") from None
        args = (enc.ids.unsqueeze(0), enc.image.unsqueeze(0), 0)
        out = self.judge.run(*args, encoded=enc) if self._run_takes_encoded else self.judge.run(*args)
        if not isinstance(out, (list, tuple)) or len(out) != 1 or not isinstance(out[0], str):
            raise OracleError(f"the judge {type(self.judge).__name__} returned {out!r} for one conversation; it must return one label")
        return out[0]

    def classify(self, outputs, request):
        """The judge's label for each answer to ``request`` (the audited case); a label outside the declared ones is
        ``UNPARSEABLE``. :class:`OracleError` where the judge returns anything but one label, or its tokenizer cannot
        spell a word of the conversation."""
        labels = []
        for answer in outputs:
            key = (request.content_hash, answer)
            if key not in self._memo:
                if len(self._memo) >= self._memo_size:
                    self._memo.clear()
                self._memo[key] = self._judge(request, answer)
            label = self._memo[key]
            labels.append(label if label in self.labels else UNPARSEABLE)
        return labels
