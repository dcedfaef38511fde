"""Measuring an oracle's error: an exact upper bound from answers people labelled, and the sample they label.

**Which error.** A certificate is about the outcome A the answer *truly* has (T, the label a person gives), while
certkit counts the oracle's label O. For every distribution of answers, ``P[T = A] >= P[O = A] - P[O = A, T != A]``:
the oracle's count overstates A only through the answers it calls A that truly are something else. So the number
the certificate subtracts from p_A's lower bound is an upper bound on the **false-A rate**
``e_A = P[O = A and T != A]``, a fraction of *all* answers (not of the non-A ones) (``kind="false_outcome"``, one
bound per outcome A). The overall disagreement ``P[O != T]`` is at least ``e_A`` for every A, so it is a valid bound
too (``kind="disagreement"``, one bound for every outcome), but a looser one: answers the oracle wrongly calls
something other than A only lower the count of A, which errs on the safe side already.

**The bound.** Among n answers drawn independently from the answer distribution and labelled by people, the number
of mistakes (O = A and T != A; for the disagreement, O != T) is Binomial(n, e). Its one-sided Clopper–Pearson upper
bound at level alpha_o exceeds e with probability at most alpha_o. A certificate made at alpha with that bound
subtracted is wrong with probability at most ``alpha + alpha_o`` (a union bound over the two events; the
calibration's event is one and the same for every certificate that uses the bound).

**Which answers.** e is a property of the answer distribution, so the calibration set must come from the distribution
the certificates are about: the *noisy* answers the audited model gives under certkit's noise on the audit's cases,
not clean answers or another model's. ``--certkit-label-sample N`` writes a uniform random sample of the answers a
run drew (:class:`AnswerSample`: from each stream's first chunk, drawn before any test looked at a label, so they are
independent draws) for people to label; ``certkit calibrate`` reads it back. A bound from a sample pooled over the
audit's cases bounds the error averaged over them, each case under each noise weighing the same: each sampled answer
is an independent draw from its stream, so the mistakes are a sum of independent Bernoulli variables, which is more
concentrated than the binomial of the same mean that the bound is exact for (Hoeffding 1956). It holds for each
case's certificate as far as the oracle errs alike on every case (label answers of one case to bound that case's own).

Imports no numpy, scipy or torch at import time (the pytest plugin loads the sampler); the statistics are imported
where a bound is computed.
"""

from __future__ import annotations

import hashlib
import heapq
import importlib
import importlib.util
import json
import math
import numbers
import sys
from pathlib import Path
from typing import Mapping, Sequence

from .oracles.base import DISAGREEMENT, FALSE_OUTCOME, KINDS, Oracle, OracleError, OracleErrorBound, cp_upper
from .requirement import unit_interval

__all__ = ["FALSE_OUTCOME", "DISAGREEMENT", "KINDS", "USELESS", "PREFIX", "OracleErrorBound", "calibrate", "more_needed", "sample_key",
           "AnswerSample", "read_labelled", "load_oracle"]

#: a bound at or above this leaves no majority certificate possible (p* >= 1/2, so p* + e >= 1): :func:`calibrate` refuses it
USELESS = 0.5


def _refuse(message: str):
    raise OracleError(message)


def _least_n_without_mistakes(alpha: float, target: float) -> int:
    """The fewest answers whose zero-mistake bound ``1 - alpha^(1/n)`` is at most ``target``."""
    n = max(1, math.ceil(math.log(alpha) / math.log1p(-target) - 1e-9))
    while cp_upper(0, n, alpha) > target:  # guard the closed form against rounding
        n += 1
    return n


def _request_of(item, i: int):
    """The request (a Case) an answer item carries: ``request`` (a Case), or ``prompt`` and ``image``."""
    from .cases import Case

    get = item.get if isinstance(item, Mapping) else (lambda key, default=None: getattr(item, key, default))
    request = get("request")
    if request is not None:
        if not isinstance(request, Case):
            _refuse(f"answer {i}: request must be a certkit.Case (the audited prompt and image), got {type(request).__name__}")
        return request
    if get("prompt") is not None and get("image") is not None:
        return Case(str(get("case") or f"calibration/{i}"), get("prompt"), get("image"))
    return None


def _answer_of(item, i: int, needs_request: bool):
    """(text, request) of one answer item: a string, or a mapping/object with ``answer`` and, for a judge, its request."""
    if isinstance(item, str):
        text, request = item, None
    else:
        text = item.get("answer") if isinstance(item, Mapping) else getattr(item, "answer", None)
        if not isinstance(text, str):
            _refuse(f"answer {i}: give the answer text as a string, or a mapping with 'answer' (and 'request' or 'prompt' and "
                    f"'image' for a judge), got {type(item).__name__}")
        request = _request_of(item, i)
    if needs_request and request is None:
        _refuse(f"answer {i}: this oracle judges each answer with its request; give {{'answer': ..., 'request': case}} "
                "(or 'prompt' and 'image')")
    return text, request


def _digest(items: list[tuple[str, str | None, str]]) -> str:
    """``sha256:`` and the hex SHA-256 of the labelled set as a set: each (answer, request's content hash, label) hashed,
    the hashes sorted, so the order of the answers does not matter and every answer, request and label does."""
    each = sorted(hashlib.sha256(json.dumps(list(item), ensure_ascii=False).encode()).hexdigest() for item in items)
    return "sha256:" + hashlib.sha256("\n".join(each).encode()).hexdigest()


def calibrate(oracle, answers: Sequence, labels: Sequence[str], alpha: float = 0.01, *, outcome: str | None = None) -> OracleErrorBound:
    """The measured error of ``oracle`` on ``answers`` that people labelled ``labels`` (one true label per answer, in
    order, each one of ``oracle.all_labels``): an :class:`OracleErrorBound` at level ``alpha``.

    With ``outcome`` A: the false-A rate, mistakes being the answers the oracle labels A whose true label is another
    (what a certificate of A subtracts; see the module docstring for why this one). Without: the disagreement rate,
    mistakes being every answer whose oracle label is not the true one (valid for every outcome, looser). The oracle
    labels the answers here, as it does in a run; for a judge (:class:`~certkit.oracles.JudgeOracle`) each answer is a
    mapping (or object) with ``answer`` and ``request`` (the audited Case) or ``prompt`` and ``image``.

    Guarantee: if the answers are drawn independently from an answer distribution and the labels are right, the
    returned ``upper`` is below the oracle's true rate on that distribution with probability at most ``alpha``.
    :class:`~certkit.oracles.OracleError`, one line each, for: no answers, answer and label counts that differ, an
    answer without a label, a label the oracle lacks, an outcome it lacks, a judge's answer without its request, and a
    set too small or an oracle too wrong for a useful bound (``upper >= 0.5``: the message says how many answers it
    takes)."""
    if not isinstance(oracle, Oracle):
        _refuse(f"calibrate() needs a certkit.oracles.Oracle, got {type(oracle).__name__}")
    why = unit_interval("alpha", alpha)
    if why:
        _refuse(f"calibrate(): {why}, got {alpha!r}")
    answers, labels = list(answers), list(labels)
    if not answers:
        _refuse("calibrate(): the calibration set is empty; label a sample of the audit's noisy answers (--certkit-label-sample N)")
    if len(answers) != len(labels):
        _refuse(f"calibrate(): {len(answers)} answers but {len(labels)} labels; give exactly one true label per answer, in order")
    allowed = oracle.all_labels
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, str) and not label.strip()):
            _refuse(f"calibrate(): answer {i} has no label; label every answer (one of {list(allowed)})")
        if label not in allowed:
            _refuse(f"calibrate(): label {label!r} of answer {i} is not one of oracle {oracle.name}'s labels {list(allowed)}")
    if outcome is not None:
        oracle.check_outcome(outcome, calibrating=True)
    parsed = [_answer_of(item, i, oracle.needs_request) for i, item in enumerate(answers)]
    if oracle.needs_request:
        said = [oracle([text], request=request)[0] for text, request in parsed]
    else:
        said = oracle([text for text, _ in parsed])
    if outcome is None:
        mistakes = sum(o != t for o, t in zip(said, labels))
    else:
        mistakes = sum(o == outcome and t != outcome for o, t in zip(said, labels))
    n = len(answers)
    floor = cp_upper(0, n, alpha)
    if floor >= USELESS:
        _refuse(f"calibrate(): {n} labelled answers cannot bound the oracle's error below {USELESS} at alpha {alpha:g} even with no "
                f"mistakes (their bound is {floor:.3g}), and no majority certificate can use more; label at least "
                f"{_least_n_without_mistakes(alpha, USELESS - 1e-12)} (for e <= 0.02: {_least_n_without_mistakes(alpha, 0.02)})")
    upper = cp_upper(mistakes, n, alpha)
    if upper >= USELESS:
        _refuse(f"calibrate(): {mistakes} mistake(s) in {n} labelled answers bound the oracle's error only by {upper:.3g} at alpha "
                f"{alpha:g}; no majority certificate can use an error of {USELESS} or more: fix the oracle before certifying with it")
    digest = _digest([(text, request.content_hash if request is not None else None, label)
                      for (text, request), label in zip(parsed, labels)])
    return OracleErrorBound(upper=upper, mistakes=mistakes, n=n, alpha=float(alpha), digest=digest,
                            kind=FALSE_OUTCOME if outcome is not None else DISAGREEMENT, outcome=outcome, oracle=oracle.behaviour)


def more_needed(mistakes: int, n: int, alpha: float, target: float) -> tuple[int | None, int | None]:
    """How many more labelled answers bring the upper bound to ``target`` or below: ``(if none of them is a mistake, if
    they err at the observed rate mistakes / n)``. 0 where the bound already is at most ``target``; None where no
    number does (the observed rate is at least ``target``; or more than 10^9 answers). The second is the count at
    which a rate-``mistakes/n`` set's bound (fractional mistakes, Clopper–Pearson through the beta quantile) reaches
    ``target``: an estimate, as the mistakes to come are. ValueError for ``target`` outside (0, 1)."""
    from scipy.special import betainccinv

    if not 0 < target < 1:
        raise ValueError(f"target must lie strictly between 0 and 1, got {target!r}")
    if cp_upper(mistakes, n, alpha) <= target:
        return 0, 0
    cap = 10**9

    def least(bound_at) -> int | None:
        hi = n
        while bound_at(hi) > target:
            if hi >= cap:
                return None
            hi = min(cap, hi * 2)
        lo = max(n, hi // 2)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if bound_at(mid) > target else (lo, mid)
        return lo - n

    none_wrong = least(lambda total: cp_upper(mistakes, total, alpha))
    rate = mistakes / n
    if mistakes == 0:
        return none_wrong, none_wrong
    at_rate = None if rate >= target else least(lambda total: float(betainccinv(rate * total + 1, total - rate * total, alpha)))
    return none_wrong, at_rate


def sample_key(stream: str, index: int) -> int:
    """The random key of answer ``index`` of the sample stream ``stream`` (its cache key): 64 bits of a SHA-256, so the
    same answer has the same key in every process, worker and run."""
    return int.from_bytes(hashlib.sha256(f"label-sample\x1f{stream}\x1f{index}".encode()).digest()[:8], "little")


#: the answers of a stream that may be sampled: its first chunk (certkit.streams.CHUNK), which every requirement
#: draws before it looks at a label
PREFIX = 32


class AnswerSample:
    """A uniform random sample, without replacement, of at most ``size`` of the answers offered to it whose index in
    their stream is below ``prefix``.

    Only a stream's first ``prefix`` answers (default: its first chunk) are sampled: every requirement draws them
    before it looks at any label, so they are independent draws from the case's answer distribution. The answers after
    them were drawn because a sequential test had not yet decided, on the labels it had seen, so they are a stopped
    sample, whose share of oracle mistakes may lean one way. So the sample is of the answer distribution averaged over
    the run's streams (each case under each noise), each stream weighing the same.

    Each answer gets the key :func:`sample_key` of (its stream, its index in the stream) and the sample keeps the
    ``size`` smallest keys (bottom-k sampling, the reservoir method for keys): the same answers whatever the
    order they come in or the worker that draws them, and samples of several workers merge into the sample of their
    union (:meth:`merge`). An answer offered twice (the same stream drawn in two workers) is kept once. A seeded
    ``random.Random`` reservoir (algorithm R) would depend on the order answers arrive in and would not merge exactly
    across xdist workers, hence the keys. :meth:`records` come in key order, which is random: the first j of them are
    themselves a uniform sample of j, so people may label the file from the top and stop anywhere."""

    def __init__(self, size: int, prefix: int = PREFIX):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"the label sample's size must be a positive whole number, got {size!r}")
        self.size, self.prefix = int(size), int(prefix)
        #: answers offered that could be sampled, in their streams' first ``prefix`` (this process's, plus those merged in)
        self.drawn = 0
        self._heap: list[tuple[int, tuple, dict]] = []  # (-key, (stream, index), record): the largest kept key on top
        self._kept: set[tuple] = set()

    def _add(self, key: int, ident: tuple, make) -> None:
        if ident in self._kept or (len(self._heap) >= self.size and key >= -self._heap[0][0]):
            return
        record = make()
        if len(self._heap) >= self.size:
            _, dropped, _ = heapq.heapreplace(self._heap, (-key, ident, record))
            self._kept.discard(dropped)
        else:
            heapq.heappush(self._heap, (-key, ident, record))
        self._kept.add(ident)

    def offer(self, *, case, stream: str, seed: int, start: int, outputs: Sequence[str], labels: Sequence[str], oracle: str) -> None:
        """Offer one batch of answers: ``outputs[i]`` is sample ``start + i`` of ``case``'s stream ``stream`` (seeded
        ``seed``), labelled ``labels[i]`` by the oracle with fingerprint ``oracle``. Of those at an index below ``prefix``,
        the answers whose keys are among the smallest ``size`` keys seen so far are kept, as records: case, case_hash,
        prompt, stream, seed, sample, answer, oracle_label, oracle and label (None: for people to fill in)."""
        for i, (text, label) in enumerate(zip(outputs, labels)):
            index = start + i
            if index >= self.prefix:
                break
            self.drawn += 1
            self._add(sample_key(stream, index), (stream, index), lambda text=text, label=label, index=index: {
                "case": case.id, "case_hash": case.content_hash, "prompt": case.prompt, "stream": stream, "seed": int(seed),
                "sample": index, "answer": text, "oracle_label": label, "oracle": oracle, "label": None})

    def merge(self, records: Sequence[dict], drawn: int) -> None:
        """Fold in another sample's :meth:`records` and its ``drawn`` count (an xdist worker's): the result is the sample
        of both sets of answers together."""
        self.drawn += int(drawn)
        for record in records:
            self._add(sample_key(record["stream"], record["sample"]), (record["stream"], record["sample"]), lambda record=record: record)

    def records(self) -> list[dict]:
        """The sampled answers, in key order (random: any first j are a uniform sample of j)."""
        return [record for _, _, record in sorted(((-k, i, r) for k, i, r in self._heap), key=lambda e: (e[0], e[1]))]

    def write(self, path: str | Path) -> Path:
        """Write :meth:`records` to ``path`` as JSON lines (folders made as needed); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for record in self.records():
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return path


def read_labelled(path: str | Path) -> tuple[list[dict], int]:
    """The labelled answers of a label-sample file (JSON lines, as :class:`AnswerSample` writes them, with ``label``
    filled in): the records whose ``label`` is set, and how many unlabelled lines follow them.

    Labelling may stop anywhere: the file's order is random, so its labelled first lines are a uniform sample; a line
    without a label *before* a labelled one is refused (the lines someone skipped would bias the set). ValueError, one
    line naming the file (and line), for a file that cannot be read, a line that is not a JSON object, a record without
    its ``answer`` text, a label that is not text, a skipped line, or no labelled line at all."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; give the JSON-lines file --certkit-label-sample wrote, labelled") from None
    records, unlabelled = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: each line must be a JSON object, got {type(record).__name__}")
        if not isinstance(record.get("answer"), str):
            raise ValueError(f"{path}:{number}: no 'answer' text; each line needs the answer and its 'label'")
        label = record.get("label")
        if label is None or (isinstance(label, str) and not label.strip()):
            unlabelled.append(number)
            continue
        if not isinstance(label, str):
            raise ValueError(f"{path}:{number}: label {label!r} must be text, one of the oracle's labels")
        if unlabelled:
            raise ValueError(f"{path}:{unlabelled[0]}: no label, but line {number} has one; label the lines in order from the top "
                             "(the file's order is random, so its first lines are a uniform sample) or label this one too")
        record["_line"] = number
        records.append(record)
    if not records:
        what = "is empty" if not unlabelled else f"has no labelled line ({len(unlabelled)} unlabelled)"
        raise ValueError(f"{path}: {what}; fill in each line's \"label\" with the answer's true label, from the top")
    return records, len(unlabelled)


def load_oracle(spec: str):
    """The oracle ``module:attr`` names: ``module`` a dotted module name (importable from the working directory) or a
    ``.py`` file's path, ``attr`` an attribute holding an Oracle or a function of no arguments returning one (a
    conftest's ``certkit_oracle`` fixture included). ValueError, one line, for a spec without ``:``, a module that
    cannot be imported, a missing attribute, or no Oracle."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--oracle {spec!r}: give module:attr, e.g. audits.conftest:certkit_oracle or audits/oracle.py:ORACLE")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            file = Path(module_name)
            if not file.is_file():
                raise ValueError(f"--oracle {spec!r}: no file {module_name}")
            loaded = importlib.util.spec_from_file_location(f"_certkit_oracle_{file.stem}", file)
            module = importlib.util.module_from_spec(loaded)
            sys.path.insert(0, str(file.parent.resolve()))
            try:
                loaded.loader.exec_module(module)
            finally:
                sys.path.remove(str(file.parent.resolve()))
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises on import, one line with its message
        raise ValueError(f"--oracle {spec!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    if not hasattr(module, attr):
        raise ValueError(f"--oracle {spec!r}: {module_name} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not isinstance(obj, Oracle) and callable(obj):
        function = getattr(obj, "__wrapped__", None) or getattr(getattr(obj, "__pytest_wrapped__", None), "obj", None) or obj
        if hasattr(obj, "_get_wrapped_function"):  # a pytest >= 8.4 fixture definition
            function = obj._get_wrapped_function()
        try:
            obj = function()
        except Exception as exc:  # noqa: BLE001 - the user's factory: its own message, in one line
            raise ValueError(f"--oracle {spec!r}: calling {attr}() failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Oracle):
        raise ValueError(f"--oracle {spec!r}: {attr} is a {type(obj).__name__}, not a certkit.oracles.Oracle (or a function returning one)")
    return obj
