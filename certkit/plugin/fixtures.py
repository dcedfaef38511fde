"""The ``certkit`` fixture: certify, frontier and assert inside a test, recording every certificate it makes.

Users define two session-scoped fixtures in their ``conftest.py``: ``certkit_model`` (a certkit model adapter) and
``certkit_oracle`` (an oracle). Tests take the function-scoped ``certkit`` fixture and call
``certkit.assert_certified(case, edits=..., radius=..., outcome=...)``. Each certificate is recorded on the test
item (see :mod:`certkit.plugin.recording`), so it reaches the controller with the test's report, xdist or not.
"""

from __future__ import annotations

import contextlib
import math

import pytest

from ..certificate import INCONCLUSIVE
from ..requirement import Requirement
from .labelling import answer_sink
from .recording import record_certificate, record_error
from .settings import SETTINGS, convert, function_id, resolve_settings, validate
from .state import STATE

_MARKER_ERRORS = pytest.StashKey[dict]()  # test function id -> [(case nodeid, its marker error or None)], in run order

#: the largest side of a case's thumbnail in the report
THUMBNAIL_PX = 48
#: the keywords each method of the fixture takes (any other is refused by name)
CERTIFY_KEYWORDS = ("edits", "radius", "outcome", "alpha", "threshold", "n_max", "sigma", "beta")
FRONTIER_KEYWORDS = ("max_edits", "outcome", "n", "alpha", "threshold", "sigma", "beta")


def _refuse_unknown(method: str, given: dict, known: tuple) -> None:
    """A keyword the method does not take is refused by name (Python's own TypeError would be a traceback)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        from ..errors import RequirementError

        raise RequirementError(f"certkit.{method}() got unknown keyword(s) {unknown}; it takes {', '.join(known)}")


def case_summary(case) -> dict:
    """What a report shows of a case: id, prompt, shape, content hash, expected label and a PNG thumbnail (data URI)
    at most ``THUMBNAIL_PX`` on a side, of the pixels clipped to [0, 1] and rounded to 8 bits."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(case.image)
    arr = (np.clip(img.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    pil.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return {"id": case.id, "prompt": case.prompt, "shape": list(img.shape), "hash": case.content_hash,
            "expected": case.expected, "thumbnail": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


@pytest.fixture(scope="session")
def certkit_model():
    """Placeholder the user's ``conftest.py`` overrides: a ``pytest.UsageError`` saying how to define it."""
    raise pytest.UsageError(
        "certkit: define a session-scoped `certkit_model` fixture in your conftest.py returning a model adapter, e.g. "
        "certkit.models.VisionLanguageModel.from_pretrained(path) or certkit.models.TorchClassifier(module, ...)"
    )


@pytest.fixture(scope="session")
def certkit_oracle():
    """Placeholder the user's ``conftest.py`` overrides: a ``pytest.UsageError`` saying how to define it."""
    raise pytest.UsageError(
        "certkit: define a session-scoped `certkit_oracle` fixture in your conftest.py returning a certkit.oracles.Oracle"
    )


@contextlib.contextmanager
def _deadline(seconds: float | None):
    """Past ``seconds``, interrupt the requirement with a CertkitError (its result: error). Uses SIGALRM, so it
    works on the main thread of a POSIX process (each xdist worker runs its tests there); elsewhere it is a no-op.
    A call blocked inside C code is interrupted when it next returns to Python."""
    import signal
    import threading

    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    from ..errors import CertkitError

    def expire(signum, frame):
        raise CertkitError(f"the requirement took longer than its timeout of {seconds:g} s (a hung model or server call?); "
                           "increase --certkit-timeout, or find the hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _settings_said_once(config: pytest.Config, item: pytest.Item) -> dict:
    """:func:`resolve_settings` for ``item``, where a bad marker's error is said in full once per test function: by
    the first of its cases (in this run's order, the same on every xdist worker) that has it, with how many cases
    share it; the others name that case."""
    from ..errors import RequirementError

    try:
        return resolve_settings(config, item)
    except RequirementError as exc:
        function = function_id(item)
        known = config.stash.setdefault(_MARKER_ERRORS, {})
        if function not in known:
            known[function] = [(other.nodeid, _marker_error(config, other)) for other in item.session.items
                               if function_id(other) == function]
        same = [nodeid for nodeid, error in known[function] if error == str(exc)]
        if len(same) < 2:
            raise
        if same[0] == item.nodeid:
            raise RequirementError(f"{exc} (said once for the {len(same)} cases of this test that share it)") from None
        raise RequirementError(f"certkit marker on {function}: the error said at {same[0]}, shared by {len(same)} cases "
                               "of this test") from None


def _marker_error(config: pytest.Config, item: pytest.Item) -> str | None:
    from ..errors import RequirementError

    try:
        resolve_settings(config, item)
    except RequirementError as exc:
        return str(exc)
    return None


class CertkitRequirement:
    """The ``certkit`` fixture: certify, frontier and assert for the current test, recording every certificate.

    ``settings`` are the test's resolved settings (command line > closest marker > ini > default); each call's
    arguments override them. One :class:`~certkit.Smoothed` per (model, oracle, sigma, beta, kernel) is shared by the
    whole session, so a case's sample stream serves every requirement on it. Any error raised while evaluating is
    recorded as the requirement's error, even if the test catches it."""

    def __init__(self, request: pytest.FixtureRequest, model, oracle, smoothed_cache: dict):
        self._request = request
        self._item = request.node
        self.settings = _settings_said_once(request.config, request.node)
        self._model, self._oracle = model, oracle
        self._cache = smoothed_cache
        self.certificates: list = []

    def _smoothed(self, sigma, beta, kernel, edits):
        """The smoothed model for these settings. A model that takes no text noise (a served model through the chat
        protocol without a word alphabet) is smoothed over the image only where the requirement edits no token;
        where it does, Smoothed refuses it with the model's reason."""
        from ..requirement import Noise
        from ..smoothing import Smoothed, refuse_text_noise

        state = self._request.config.stash[STATE]
        if getattr(self._model, "no_text_noise", None) and beta:
            if edits:
                refuse_text_noise(self._model)
            beta = 0.0
        key = (id(self._model), id(self._oracle), sigma, beta, kernel)
        if key not in self._cache:
            noise = Noise(sigma, beta, kernel, int(self._model.alphabet.numel()) if beta and kernel != "mask" else None)
            self._cache[key] = Smoothed(self._model, self._oracle, image=noise.image(), text=noise.text(), seed=state.seed,
                                        cache=state.cache_dir)
            self._cache[key].answer_sink = answer_sink(self._request.config)  # --certkit-label-sample
        return self._cache[key]

    @contextlib.contextmanager
    def _evaluating(self):
        """An error raised while evaluating is the requirement's error even if the test catches it (a ``try``
        around the call, a ``pytest.skip`` in its ``except``): it is kept on the item for the report."""
        try:
            yield
        except Exception as exc:
            record_error(self._item, exc)
            raise

    def _settings(self, case, overrides: dict) -> dict:
        """The requirement's settings: an argument > command line > closest marker > ini > default. An outcome
        nowhere given is the case's ``expected`` label (a case file's column): the requirement states its outcome,
        the case only proposes one."""
        from ..errors import RequirementError

        s = dict(self.settings)
        for name, value in overrides.items():
            if value is None:
                continue
            if name == "outcome" and not isinstance(value, str):
                raise RequirementError(f"argument outcome = {value!r}: give the outcome label as text, e.g. outcome='harmless'")
            s[name] = validate(name, convert(name, SETTINGS[name][0], value, "argument", RequirementError), "argument", RequirementError)
        if s.get("outcome") is None:
            expected = getattr(case, "expected", None)
            if expected is None:
                raise RequirementError(
                    "no outcome to certify: pass outcome=..., set it with @pytest.mark.certkit(outcome=...), the "
                    "certkit_outcome ini key or --certkit-outcome, or give the case an expected label (`expected` in a case file)")
            if not isinstance(expected, str) or not expected.strip():
                raise RequirementError(f"case {getattr(case, 'id', case)!r}: expected = {expected!r} is no outcome label; give a label "
                                       "such as 'harmless', or pass outcome=...")
            labels = getattr(self._oracle, "labels", None)
            if labels is not None and expected not in labels:  # the case file's mistake: say where it is
                where = getattr(case, "where", None)
                raise RequirementError(f"{where + ': ' if where else ''}case {case.id!r}: expected = {expected!r} is not a label of "
                                       f"oracle {getattr(self._oracle, 'name', type(self._oracle).__name__)!r}, whose labels are "
                                       f"{list(labels)}; correct the case's expected label, or pass outcome=...")
            s["outcome"] = expected
        return s

    def _record(self, cert, case) -> None:
        self.certificates.append(cert)
        record_certificate(self._item, cert.to_dict(), case.content_hash, lambda: case_summary(case))

    def certify(self, case, *, edits: int = 0, radius: float = 0.0, outcome: str | None = None, alpha=None, threshold=None,
                n_max=None, sigma=None, beta=None, **unknown):
        """The :class:`~certkit.certificate.Certificate` of :meth:`certkit.Smoothed.certify` for this requirement, recorded
        for the results whatever its status (this method never fails the test by itself). An argument left None takes the
        test's setting; an outcome given nowhere is the case's ``expected`` label. RequirementError for an unknown
        keyword, a bad value or no outcome; a requirement past the ``timeout`` setting is a CertkitError."""
        with self._evaluating():
            _refuse_unknown("certify", unknown, CERTIFY_KEYWORDS)
            s = self._settings(case, dict(outcome=outcome, alpha=alpha, threshold=threshold, n_max=n_max, sigma=sigma, beta=beta))
            smoothed = self._smoothed(s["sigma"], s["beta"], s["kernel"], edits)
            requirement = Requirement(s["outcome"], edits=edits, radius=radius, alpha=s["alpha"], threshold=s["threshold"],
                                      n_max=s["n_max"])
            with _deadline(s.get("timeout")):
                cert = smoothed.certify(case, requirement)
            self._record(cert, case)
        return cert

    def frontier(self, case, *, max_edits: int | None = None, outcome: str | None = None, n: int = 10_000, alpha=None, threshold=None,
                 sigma=None, beta=None, **unknown):
        """The report-mode certificate of :meth:`certkit.Smoothed.frontier` (``n`` samples, the largest certified radius
        for each d up to ``max_edits``), recorded for the results; settings and errors as in :meth:`certify`."""
        with self._evaluating():
            _refuse_unknown("frontier", unknown, FRONTIER_KEYWORDS)
            s = self._settings(case, dict(outcome=outcome, alpha=alpha, threshold=threshold, sigma=sigma, beta=beta))
            smoothed = self._smoothed(s["sigma"], s["beta"], s["kernel"], max_edits)
            with _deadline(s.get("timeout")):
                cert = smoothed.frontier(case, max_edits=max_edits, outcome=s["outcome"], n=n, alpha=s["alpha"],
                                         threshold=s["threshold"])
            self._record(cert, case)
        return cert

    def assert_certified(self, case, *, edits: int = 0, radius: float = 0.0, outcome: str | None = None, **kwargs):
        """Certify and fail the test unless certified (inconclusive fails too unless allowed). Takes the keywords of
        :meth:`certify`."""
        with self._evaluating():
            _refuse_unknown("assert_certified", kwargs, CERTIFY_KEYWORDS)
        cert = self.certify(case, edits=edits, radius=radius, outcome=outcome, **kwargs)
        if cert.certified:
            return cert
        state = self._request.config.stash[STATE]
        if cert.status == INCONCLUSIVE and state.allow_inconclusive:
            return cert
        message = failure_message(cert)
        if state.min_pass_rate is not None:
            pytest.xfail(f"counted against --certkit-min-pass-rate: {message}")
        pytest.fail(message, pytrace=False)


def failure_message(cert) -> str:
    """Why a certificate is not certified, in a few lines: the requirement, p_A's bounds and counts, p* and p_adv, the
    largest radius the bound does certify (where the noise allows working it out) and what to change."""
    from .. import bounds

    req = f"{cert.outcome!r} at {cert.edits} token edit(s), image l2 radius {cert.radius:g}, tau = {cert.threshold:g}"
    lines = [
        f"{cert.status.upper()}: case {cert.case_id!r} is not certified {req}",
        f"  p_A in [{cert.p_a_lower:.6f}, {cert.p_a_upper:.6f}] at confidence {1 - cert.alpha:g} after n = {cert.n} samples "
        f"({cert.successes} with the outcome; counts {cert.label_counts})",
        f"  needed p_A >= p* = {cert.p_star:.6f}; worst case p_adv = {cert.p_adv:.6g} (needs >= {cert.threshold:g})",
    ]
    try:
        image, text = cert.noise.image(), cert.noise.text()
        if image is not None and cert.p_a_lower > 0:
            r = float(bounds.max_radius(cert.p_a_lower, image, text, cert.edits, cert.threshold))
            lines.append(f"  with this p_A bound the largest certified radius at {cert.edits} edit(s) is "
                         f"{'none' if r == -math.inf else f'{r:.4f}'}")
    except (KeyError, TypeError, ValueError):
        pass
    if cert.status == INCONCLUSIVE:
        lines.append(f"  to decide, raise n_max (now {cert.n_max}) or, if p_A sits near p*, relax the requirement")
    elif math.isfinite(cert.p_star) and cert.p_star < 1:
        lines.append("  to pass: a model whose p_A exceeds p*, a smaller radius or fewer edits, or a smaller beta / larger sigma")
    else:
        lines.append("  no number of samples can certify this: reduce the radius or edits, or change the noise")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def _certkit_smoothed_cache():
    return {}


@pytest.fixture
def certkit(request, certkit_model, certkit_oracle, _certkit_smoothed_cache):
    """Certify requirements in a test: ``certkit.assert_certified(case, edits=1, radius=0.25, outcome="harmless")``."""
    from ..errors import CertkitError

    for name, value in (("certkit_model", certkit_model), ("certkit_oracle", certkit_oracle)):
        if value is None:
            raise CertkitError(f"the `{name}` fixture returned None; it must return the "
                               f"{'model adapter' if name == 'certkit_model' else 'oracle'} (a missing `return`?)")
    return CertkitRequirement(request, certkit_model, certkit_oracle, _certkit_smoothed_cache)
