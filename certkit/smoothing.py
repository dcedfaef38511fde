"""``Smoothed``: a model, an output oracle and noise kernels, turned into certificates.

Guarantee (certify mode): for a requirement (outcome A, ``edits`` d, ``radius`` eps, ``threshold`` tau),
``p* = required_p_a(d, eps, tau)`` is known before sampling, rounded outward: the smallest double whose worst case
meets tau in exact arithmetic (:mod:`certkit.boundary`), so no verdict rests on rounding. Samples are drawn in batches and the
anytime-valid :class:`~certkit.sequential.MixtureTest` of ``p_A - e >= p*`` (``e`` the oracle's declared
error) stops as soon as the answer is clear either way. Whatever the stopping time, the probability of
reporting *certified* when the smoothed ``oracle ∘ model`` does not in fact meet the requirement is at
most ``alpha``.

Report mode (:meth:`Smoothed.frontier`): a fixed ``n``, one one-sided Clopper–Pearson lower bound at
level ``alpha``, and the whole (d, eps) frontier from it (no correction per d: the noise does not depend
on d).

Samples come from the case's one sample stream (:mod:`certkit.streams`: every requirement on a case reads the same
stream's first n labels, kept in memory and in the count cache, drawn in chunks so counts do not depend on the order
of requirements or the batch size), in batches whose size steps down when the device runs out of memory
(:mod:`certkit.backoff`).

Draws and failures: ``certify`` looks after one batch (or the fewest samples that can certify, if fewer), then after
a quarter more; the test scans sample by sample, so the looks change the draws, never the decision, and a decision
at ``n`` samples costs at most ``max(1.25 n, one batch) + CHUNK`` forward passes. Every batch's labels are kept as it
finishes; a requirement that ends by an error (the model's, a timeout) or an interrupt (Ctrl-C, SIGTERM in a certkit
run) still writes the whole chunks it drew to the count cache, so the rerun draws only the rest. An error raised by
the user's model is reported once, as a :class:`~certkit.models.base.ModelError` naming the case, the inputs' shapes
and dtypes and the model's own message.

Early stopping: where the oracle declares prefix decisions (:meth:`~certkit.oracles.Oracle.decide_prefix`) and the
adapter's ``run`` takes ``decide``, each sample stops generating once its label is decided; the label is the one the
full answer has (the oracle's contract), so counts, certificates and cache keys are unchanged. Off with
``Smoothed(early_stop=False)`` or ``CERTKIT_EARLY_STOP=0``, and while an ``answer_sink`` collects answers (people label
whole answers). The new tokens generated go into ``timings["generated_tokens"]`` for adapters that count them.
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from . import bounds, stats
from .backoff import Backoff
from .boundary import boundary
from .cache import CountCache
from .cases import Case, CaseError
from .certificate import CERTIFIED, INCONCLUSIVE, NOT_CERTIFIED, Certificate
from .errors import CertkitError, RequirementError
from .models.base import ModelError, takes_encoded
from .noise import Gaussian, Mask, UniformReplace
from .oracles import Oracle, OracleError
from .requirement import Requirement, positive_integer
from .sampling import alphabet_index
from .sequential import MixtureTest
from .streams import CHUNK, Draw, Streams, batch_end, generation_seed

__all__ = ["Smoothed", "refuse_text_noise"]


def refuse_text_noise(model) -> None:
    """Raise :class:`~certkit.models.base.ModelError` with the model's own reason (its ``no_text_noise``) where it
    cannot take text noise (a served model behind a text API re-tokenizes); return None where it can."""
    reason = getattr(model, "no_text_noise", None)
    if reason:
        raise ModelError(f"text noise cannot be certified through {type(model).__name__}: {reason}")


def _takes_decide(adapter) -> bool:
    """Whether ``adapter.run`` takes the keyword ``decide`` (an oracle's prefix decision) besides ``encoded``."""
    try:
        params = inspect.signature(adapter.run).parameters
    except (TypeError, ValueError):
        return False
    return "decide" in params and "encoded" in params


def _check_count(name: str, value) -> int:
    if positive_integer(name, value):
        raise RequirementError(f"{positive_integer(name, value)}, got {value!r}")
    return int(value)


class Smoothed:
    """The smoothed ``oracle ∘ model`` under image noise ``image`` and text noise ``text``.

    ``model`` is a :class:`~certkit.models.ModelAdapter` (e.g. ``VisionLanguageModel`` or
    ``TorchClassifier``); ``oracle`` an :class:`~certkit.oracles.Oracle`. ``cache`` is a
    :class:`~certkit.cache.CountCache`, a directory for one, or None. ``max_batch_bytes`` bounds the memory
    of one batch of noisy images (large images run in smaller batches, down to one sample). ``seed`` is the run
    seed every case's stream derives from. ``answer_sink`` (an attribute, None by default) is called with every batch
    of answers the model gives and their labels, as keywords ``case, stream, seed, start, outputs, labels, oracle``
    (:meth:`certkit.calibration.AnswerSample.offer`: the labelling sample of ``--certkit-label-sample``); answers the
    count cache already holds are not drawn again, so they are not offered.

    Everything is checked before any sample: RequirementError for kernels of the wrong kind, a non-integer seed or
    a ``max_batch_bytes`` below 1; OracleError unless ``oracle`` is an :class:`~certkit.oracles.Oracle`; ModelError
    for a model without the adapter attributes, text noise it refuses, a ``UniformReplace.vocab_size`` that is not
    the size of its alphabet, or the Mask kernel on a model without a mask token.

    ``early_stop`` (default: on unless the environment sets ``CERTKIT_EARLY_STOP=0``) lets a generating adapter stop a
    sample once the oracle's label is decided (module docstring); the labels are the same either way.
    """

    def __init__(self, model, oracle: Oracle, image: Gaussian | None = None, text: UniformReplace | Mask | None = None,
                 seed: int = 0, cache: CountCache | str | Path | None = None, max_batch_bytes: int = 1 << 30,
                 early_stop: bool | None = None):
        if image is not None and not isinstance(image, Gaussian):
            raise RequirementError(f"image must be certkit.noise.Gaussian(sigma) or None, got {type(image).__name__}")
        if text is not None and not isinstance(text, (UniformReplace, Mask)):
            raise RequirementError(f"text must be certkit.noise.UniformReplace, Mask or None, got {type(text).__name__}")
        if not isinstance(oracle, Oracle):
            raise OracleError(f"oracle must be a certkit.oracles.Oracle, got {type(oracle).__name__}; wrap a function in ClassifierOracle")
        for attr in ("encode", "run", "fingerprint", "alphabet", "batch_size"):
            if not hasattr(model, attr):
                raise ModelError(f"model must be a certkit model adapter (missing {attr!r}); "
                                 "wrap it in VisionLanguageModel or TorchClassifier")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise RequirementError(f"seed must be an integer, got {seed!r}")
        self.max_batch_bytes = _check_count("max_batch_bytes", max_batch_bytes)
        self._run_takes_encoded = takes_encoded(model)
        if early_stop is None:
            early_stop = os.environ.get("CERTKIT_EARLY_STOP", "1").strip() != "0"
        self.early_stop = bool(early_stop) and oracle.decides_prefixes and not oracle.needs_request and _takes_decide(model)
        if text is not None:
            refuse_text_noise(model)
        if isinstance(text, UniformReplace) and text.vocab_size != model.alphabet.numel():
            raise ModelError(
                f"UniformReplace.vocab_size is {text.vocab_size} but the model's replacement alphabet has "
                f"{model.alphabet.numel()} token ids; use UniformReplace({text.beta}, {model.alphabet.numel()})"
            )
        if isinstance(text, Mask) and getattr(model, "mask_id", None) is None:
            raise ModelError("the Mask kernel needs a mask token, and this model has none; set the adapter's mask_id or use UniformReplace")
        self.model, self.oracle, self.image, self.text, self.seed = model, oracle, image, text, int(seed)
        self.cache = CountCache(cache) if isinstance(cache, (str, Path)) else cache
        self.answer_sink = None
        self._streams = Streams(model, oracle, image, text, self.seed, self.cache)
        self._backoff = Backoff(model, self.max_batch_bytes)
        self._label_index = {label: i for i, label in enumerate(oracle.all_labels)}

    # ------------------------------------------------------------------ sampling

    def _encode(self, case: Case):
        if not isinstance(case, Case):
            raise CaseError(f"case must be a certkit.Case, got {type(case).__name__}; "
                            "build one with Case(id, prompt, image) or load_cases(path)")
        enc = self.model.encode(case)
        if isinstance(self.text, UniformReplace):
            prompt_ids = enc.ids[enc.editable]
            outside = prompt_ids[alphabet_index(self.model.alphabet, prompt_ids) < 0]
            if outside.numel():
                raise ModelError(
                    f"case {case.id!r}: prompt token ids {outside.unique().tolist()[:5]} are not in the replacement alphabet "
                    "(special tokens?); remove them from the prompt"
                )
        return enc

    def _run_batch(self, draw: Draw, ids: list, images: list, start: int) -> list[str]:
        """The oracle labels of one batch, whose first sample is sample ``start`` of the stream. Any error the user's
        model raises becomes one :class:`ModelError` naming the case, the inputs' shapes and dtypes and the model's
        own message (the original chained); certkit's own errors, interrupts and out-of-memory pass as they are."""
        ids_t, images_t = torch.stack(ids), torch.stack(images)
        seed = generation_seed(draw.seed, start)
        try:
            tokens_before = getattr(self.model, "generated_tokens", None)
            if self._run_takes_encoded:
                # people label whole answers: no early stop while an answer sink collects them
                decide = {"decide": self.oracle.decide_prefix} if self.early_stop and self.answer_sink is None else {}
                outputs = self.model.run(ids_t, images_t, seed, encoded=draw.enc, **decide)
            else:
                outputs = self.model.run(ids_t, images_t, seed)
            if isinstance(tokens_before, int):
                draw.timing["generated_tokens"] = draw.timing.get("generated_tokens", 0) + self.model.generated_tokens - tokens_before
        except (CertkitError, torch.OutOfMemoryError):
            raise
        except Exception as exc:
            raise ModelError(
                f"case {draw.case.id!r}: {type(self.model).__name__}.run failed on a batch of {len(ids)} noisy samples with token ids "
                f"{tuple(ids_t.shape)} {ids_t.dtype} and images {tuple(images_t.shape)} {images_t.dtype}: {type(exc).__name__}: {exc} "
                "(the model's own error: check that the case's image has the channels and size, and the prompt the length, "
                "the model takes)") from exc
        outputs = self._checked_outputs(outputs, len(ids))
        labels = self.oracle(outputs, request=draw.case) if self.oracle.needs_request else self.oracle(outputs)
        if self.answer_sink is not None:
            self.answer_sink(case=draw.case, stream=draw.key, seed=draw.seed, start=start, outputs=outputs, labels=labels,
                             oracle=self.oracle.fingerprint)
        return labels

    def _checked_outputs(self, outputs, batch: int) -> list[str]:
        """The adapter's outputs for one batch, refused unless they are exactly ``batch`` strings: a short,
        long or non-text answer would misalign samples and counts, so it is an error, never a guess."""
        name = type(self.model).__name__
        if isinstance(outputs, (str, bytes)) or not isinstance(outputs, (list, tuple)):
            raise ModelError(f"{name}.run must return a list of {batch} strings (one output per sample), got {type(outputs).__name__}")
        if len(outputs) != batch:
            raise ModelError(f"{name}.run returned {len(outputs)} outputs for a batch of {batch} samples; "
                             "it must return exactly one per sample")
        for i, out in enumerate(outputs):
            if not isinstance(out, str):
                raise ModelError(f"{name}.run returned a {type(out).__name__} as output {i} of the batch; outputs must be strings "
                                 "(decoded text for generators, class names for classifiers)")
        return list(outputs)

    def _open(self, case: Case) -> Draw:
        """The case's stream as this requirement starts: what this process or the cache already holds."""
        return self._streams.open(case, self._encode(case))

    def _extend(self, draw: Draw, n: int) -> None:
        """Draw the stream on to at least ``n`` samples (whole chunks), batch by batch; each batch's labels join the
        draw as it finishes, so an error or interrupt loses at most the batch in flight (see :meth:`certkit.streams.Streams.keep`)."""
        if draw.size >= n:
            return
        t0 = time.perf_counter()
        before = draw.size
        first, stop = draw.size // CHUNK, math.ceil(n / CHUNK)
        samples = self._streams.noisy_samples(draw.enc, draw.seed, first, stop)
        start = first * CHUNK
        while start < stop * CHUNK:
            end = batch_end(start, self._backoff.size(draw.enc), stop * CHUNK)
            ids, images = zip(*itertools.islice(samples, end - start))
            draw.add(self._backoff.run(draw, list(ids), list(images), start, self._run_batch, self._label_index))
            start = end
        draw.timing["sampling_s"] = draw.timing.get("sampling_s", 0.0) + time.perf_counter() - t0
        draw.timing["forward_samples"] = draw.timing.get("forward_samples", 0) + draw.size - before
        draw.timing["batch_size"] = self._backoff.size(draw.enc)

    # ------------------------------------------------------------------ certificates

    def _check_requirement(self, requirement: Requirement) -> Requirement:
        """``requirement`` if this smoothed model can evaluate it: its outcome one of the oracle's labels, image noise
        for a radius, text noise for edits."""
        if not isinstance(requirement, Requirement):
            raise RequirementError(f"requirement must be a certkit.requirement.Requirement, got {type(requirement).__name__}")
        self.oracle.check_outcome(requirement.outcome)
        if requirement.radius > 0 and self.image is None:
            raise RequirementError("radius > 0 needs image noise: Smoothed(..., image=Gaussian(sigma))")
        if requirement.edits > 0 and self.text is None:
            raise RequirementError("edits > 0 needs text noise: Smoothed(..., text=UniformReplace(beta, vocab) or Mask(beta))")
        return requirement

    def _requirement(self, requirement: Requirement | None, outcome, **fields) -> Requirement:
        """The requirement given, or the one its keywords state (the oracle checks the outcome first, as it always has)."""
        if requirement is not None:
            return self._check_requirement(requirement)
        if outcome is None:
            raise TypeError("certify() needs the outcome to certify: outcome=... or a certkit.requirement.Requirement")
        self.oracle.check_outcome(outcome)
        return self._check_requirement(Requirement(outcome, **fields))

    def _common(self, case, seed, timing, **extra):
        return dict(
            case_id=case.id,
            seed=seed,
            image_kernel=self.image.params() if self.image else None,
            text_kernel=self.text.params() if self.text else None,
            model_fingerprint=self.model.fingerprint,
            oracle_fingerprint=self.oracle.fingerprint,
            oracle_error=self.oracle.error,
            oracle_calibration=self.oracle.calibration.to_dict() if getattr(self.oracle, "calibration", None) else None,
            case_hash=case.content_hash,
            timings=timing,
            runtime=getattr(self.model, "runtime", None),
            **extra,
        )

    def _label_counts(self, labels: np.ndarray) -> dict:
        counts = np.bincount(labels, minlength=len(self.oracle.all_labels))
        return {label: int(c) for label, c in zip(self.oracle.all_labels, counts) if c}

    def _required(self, radius: float, edits: int, threshold: float) -> tuple[float, float]:
        """``p*`` for the requirement, and the level the test must show for ``p_A`` as the oracle sees it.

        ``p*`` is rounded outward: the smallest double that clears the exact boundary
        (:meth:`certkit.boundary.Boundary.clears`: ``p_adv(p*) >= tau`` in exact arithmetic, strictly above 1/2 at the
        majority threshold) and whose double-precision ``worst_case`` passes the threshold too (so the recorded
        ``p_adv`` never contradicts the verdict). ``p_test`` is the smallest double with ``p_test - e >= p*`` exactly. So
        a lower bound ``>= p_test`` proves the requirement in exact arithmetic, never by rounding. A requirement no
        ``p_A <= 1`` can meet, or whose ``p*`` is not a number in (0, 1), is refused: it cannot be evaluated."""
        where = f"{edits} token edit(s) and image l2 radius {radius!r} at threshold {threshold!r}"
        p_star = float(bounds.required_p_a(self.image, radius, self.text, edits, threshold))
        if not math.isfinite(p_star) or p_star + self.oracle.error >= 1.0:
            extra = f" plus the oracle's error bound {self.oracle.error}" if self.oracle.error else ""
            raise RequirementError(f"unreachable requirement: {where} needs p_A >= {p_star}{extra}, and no sample can show p_A >= 1; "
                                   "ask for a smaller radius or fewer edits, a larger sigma or smaller beta, or a lower threshold")
        if not p_star > 0.0:
            raise RequirementError(f"threshold {threshold!r} is so small that the required p_A underflows to {p_star} in double "
                                   "precision, which would certify with no evidence; use a threshold of at least 1e-300")
        exact = boundary(self.image, float(radius), self.text, int(edits), float(threshold))

        def meets(p: float) -> bool:
            return exact.clears(p) and bool(bounds.is_certified(bounds.worst_case(p, self.image, radius, self.text, edits), threshold))

        if exact.reachable:  # start from the exact boundary rounded up to a double (the double solver's p* may sit ulps off)
            up = float(exact.high)
            p_star = up if Fraction(up) >= exact.high else math.nextafter(up, 2.0)
        step = 0
        while not meets(p_star):
            step += 1
            if step > 64 or p_star >= 1.0:
                raise RequirementError(f"{where}: no p_A in (0, 1) meets the threshold in double precision; relax the requirement")
            # one ulp at a time (the smallest double that meets both), then growing steps for a badly rounded start
            p_star = min(1.0, math.nextafter(p_star, 2.0) + (p_star * 2.0 ** (step - 69) if step > 16 else 0.0))
        p_test = p_star + self.oracle.error
        while Fraction(p_test) - Fraction(self.oracle.error) < Fraction(p_star):  # exactly, not in rounded doubles
            p_test = math.nextafter(p_test, 2.0)
        if p_test >= 1.0:
            raise RequirementError(f"unreachable requirement: {where} needs p_A >= {p_test}, and no sample can show p_A >= 1")
        return p_star, p_test

    def certify(self, case: Case, requirement: Requirement | None = None, *, radius: float = 0.0, edits: int = 0,
                outcome: str | None = None, alpha: float = Requirement.alpha, threshold: float = Requirement.threshold,
                n_max: int = Requirement.n_max) -> Certificate:
        """Certify ``requirement``: that its outcome holds within ``edits`` token edits and image l2 ``radius``.

        The keywords state the requirement instead, as a convenience (``outcome`` then required); give one or the
        other. Stops as soon as the sequential test decides; ``inconclusive`` if ``n_max`` samples do not.

        Guarantee: if the smoothed ``oracle ∘ model`` does not meet the requirement, the returned certificate is
        ``certified`` with probability at most ``alpha`` (over the noise; whatever the stopping time). A certified
        certificate's own numbers meet it: its ``p_adv``, from ``p_a_lower`` (already less the oracle's error),
        passes the threshold rule (where it would not, the certificate is inconclusive).
        Raises TypeError for a Requirement and keywords together, or no outcome; RequirementError for a requirement
        this smoothed model cannot evaluate (a radius without image noise, edits without text noise) or no sample
        count can meet (no ``p_A <= 1`` does, or not within ``n_max``: the message gives the samples it would take);
        OracleError for an outcome that is not one of the oracle's labels; CaseError or ModelError for a case the
        model cannot take or outputs it cannot give.
        """
        t_start = time.perf_counter()
        if requirement is not None and (outcome is not None or (radius, edits, alpha, threshold, n_max) != (
                0.0, 0, Requirement.alpha, Requirement.threshold, Requirement.n_max)):
            raise TypeError("certify() takes a Requirement or its keywords (outcome=..., radius=..., ...), not both")
        req = self._requirement(requirement, outcome, edits=edits, radius=radius, alpha=alpha, threshold=threshold, n_max=n_max)
        outcome, edits, radius, alpha, threshold, n_max = req.outcome, req.edits, req.radius, req.alpha, req.threshold, req.n_max
        p_star, p_test = self._required(radius, edits, threshold)
        draw = self._open(case)
        target_label = self._label_index[outcome]
        common = self._common(case, draw.seed, draw.timing, outcome=outcome, edits=int(edits), radius=float(radius),
                              threshold=threshold, alpha=alpha, p_star=p_star, n_max=n_max, mode="certify")
        test = MixtureTest(p_test, alpha, n_max)
        first = test.min_samples_to_certify()
        if first is None:
            need = test.samples_to_certify()
            raise RequirementError(
                f"unreachable within n_max: {int(edits)} token edit(s) and image l2 radius {radius!r} at threshold {threshold!r} "
                f"need p_A >= {p_test:.6g}, which {n_max} samples cannot show even if every one agrees; it takes "
                f"{'more than 10^9' if math.isinf(need) else int(need)} samples: raise n_max to that, or ask for a smaller radius or "
                "fewer edits, a larger sigma or smaller beta, or a lower threshold (`certkit plan` prints the numbers)")
        n, k, decision = 0, 0, stats.Decision.CONTINUE
        # The test scans sample by sample, so where the looks fall changes no decision, only the draws: the first look
        # after one batch (or the fewest samples that can certify, if fewer), then a quarter more, at least a chunk. So a
        # decision at n costs at most max(1.25 n + CHUNK, a batch + CHUNK) forward passes (each draw rounds up to chunks).
        target = min(first, self._backoff.size(draw.enc))
        try:
            while decision is stats.Decision.CONTINUE:
                self._extend(draw, min(n_max, target))
                labels = draw.labels()
                n, k, decision = test.first_decision(labels[n:n_max] == target_label, k, n)
                target = max(n + CHUNK, math.ceil(1.25 * n))
        finally:
            self._streams.keep(draw)
        lower, upper = test.bounds(k, n)
        lower = stats.adjust_for_oracle_error(lower, self.oracle.error)
        p_adv = float(bounds.worst_case(lower, self.image, radius, self.text, int(edits)))
        status = {stats.Decision.CERTIFIED: CERTIFIED, stats.Decision.NOT_CERTIFIED: NOT_CERTIFIED}.get(decision, INCONCLUSIVE)
        exact = boundary(self.image, float(radius), self.text, int(edits), float(threshold))
        if status == CERTIFIED and not (exact.clears(lower) and bool(bounds.is_certified(p_adv, threshold))):
            status = INCONCLUSIVE  # never record a certificate whose own numbers, decided exactly, do not meet the threshold
        draw.timing["total_s"] = time.perf_counter() - t_start
        return Certificate(status=status, p_a_lower=float(lower), p_a_upper=float(upper), p_adv=p_adv, n=n, successes=k,
                           label_counts=self._label_counts(labels[:n]), cached=draw.cached >= n, margin=exact.margin(lower), **common)

    def frontier(self, case: Case, max_edits: int | None = None, *, outcome: str, n: int = 10_000, alpha: float = 0.01,
                 threshold: float = bounds.DEFAULT_THRESHOLD) -> Certificate:
        """Report mode: ``n`` samples, one Clopper–Pearson lower bound, the largest certified radius for each
        d = 0..max_edits (default 8 with text noise, 0 without).

        The certificate's ``frontier`` is :func:`certkit.bounds.frontier` of the lower bound (less the oracle's error),
        non-increasing in d and ``-inf`` where nothing is certified; with probability at least ``1 - alpha`` every
        radius in it is certified at once (one bound serves every d). ``status`` is certified iff the lower bound
        alone passes the threshold (d = 0, radius 0). RequirementError without image noise, for edits without text
        noise, or a ``max_edits`` or ``n`` that is not a non-negative (``n``: positive) integer; otherwise raises as
        :meth:`certify` does.
        """
        t_start = time.perf_counter()
        if max_edits is None:
            max_edits = 8 if self.text is not None else 0
        if isinstance(max_edits, bool) or not isinstance(max_edits, numbers.Integral) or max_edits < 0:
            raise RequirementError("max_edits must be a non-negative integer (the frontier's largest token-edit budget), "
                                   f"got {max_edits!r}")
        req = self._requirement(None, outcome, edits=max_edits, alpha=alpha, threshold=threshold)
        alpha, threshold = req.alpha, req.threshold
        n = _check_count("n", n)
        if self.image is None:
            raise RequirementError("a (d, eps) frontier needs image noise: Smoothed(..., image=Gaussian(sigma))")
        draw = self._open(case)
        try:
            self._extend(draw, n)
        finally:
            self._streams.keep(draw)
        labels = draw.labels()
        k = int((labels[:n] == self._label_index[outcome]).sum())
        lower, upper = stats.clopper_pearson(k, n, alpha)
        lower = stats.adjust_for_oracle_error(lower, self.oracle.error)
        radii = bounds.frontier(lower, self.image, self.text, int(max_edits) if self.text else 0, threshold)
        p_star = float(bounds.required_p_a(self.image, 0.0, None, 0, threshold))
        status = CERTIFIED if bool(bounds.is_certified(lower, threshold)) else NOT_CERTIFIED
        draw.timing["total_s"] = time.perf_counter() - t_start
        return Certificate(
            status=status, p_a_lower=float(lower), p_a_upper=float(upper), p_adv=float(lower), n=n, successes=k,
            label_counts=self._label_counts(labels[:n]), cached=draw.cached >= n, frontier=tuple(float(r) for r in np.atleast_1d(radii)),
            margin=boundary(None, 0.0, None, 0, float(threshold)).margin(lower),
            **self._common(case, draw.seed, draw.timing, outcome=outcome, edits=int(max_edits), radius=0.0, threshold=threshold,
                           alpha=alpha, p_star=p_star, n_max=n, mode="frontier"),
        )
