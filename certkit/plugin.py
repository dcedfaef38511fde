"""The certkit pytest plugin: certification requirements as pytest tests.

Users define two session-scoped fixtures in their ``conftest.py``: ``certkit_model`` (a certkit model
adapter) and ``certkit_oracle`` (an oracle). Tests take the function-scoped ``certkit`` fixture and call
``certkit.assert_certified(case, edits=..., radius=..., outcome=...)``.

Settings, highest precedence first: ``--certkit-*`` command-line options, the ``certkit(...)`` marker
(the closest one: function, then class, then module), ``certkit_*`` ini keys, built-in defaults.

Results: every certificate travels with its test report (``user_properties``) to the controller, with or
without xdist, and is written to ``--certkit-json`` (default ``reports/results.json``) at the end of the
session, together with run metadata. This module imports no model code at import time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .regression import RESULTS_SCHEMA, write_results

_PROPERTY = "certkit_certificate"
_ERROR = "certkit_error"
_CASE = "certkit_case"
THUMBNAIL_PX = 48


def case_summary(case) -> dict:
    """What a report shows of a case: id, prompt, shape, content hash and a small PNG thumbnail (data URI)."""
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

# name -> (type, default, help); the marker takes the same names
SETTINGS = {
    "sigma": (float, 0.25, "image Gaussian noise std in [0, 1] pixel units"),
    "beta": (float, 0.25, "per-token replacement (or mask) probability of the text kernel; 0 = no text noise"),
    "kernel": (str, "uniform", "text kernel: uniform or mask"),
    "alpha": (float, 0.01, "false-certification rate per requirement"),
    "threshold": (float, 0.5, "threshold tau on the worst-case probability of the outcome"),
    "n_max": (int, 10_000, "sample cap of the sequential test"),
    "outcome": (str, None, "default target outcome label"),
    "timeout": (float, None, "seconds one requirement may take; past it the requirement is an error (a hung model call)"),
}
_RUN_OPTIONS = {
    "seed": (int, 0, "run seed; per-requirement seeds derive from (seed, case id, requirement)"),
    "json": (str, "reports/results.json", "where to write the results file"),
    "report": (str, "reports/audit.html", "where to write the HTML audit report ('none' to skip)"),
    "baseline": (str, None, "a committed results file to compare with: regressions fail the run"),
    "update_baseline": (bool, False, "write this run's results to the --certkit-baseline file"),
    "history": (str, "reports/history.jsonl", "append a summary of each run here ('none' to skip)"),
    "cache_dir": (str, "reports/.cache", "count cache folder ('none' to disable)"),
    "min_pass_rate": (float, None, "gate on the certified share of requirements instead of each one"),
    "allow_inconclusive": (bool, False, "do not fail requirements that stay inconclusive at n_max"),
    "devices": (str, None, "comma-separated GPU ids for xdist workers (default: CUDA_VISIBLE_DEVICES or all)"),
}


# --------------------------------------------------------------------------- options and settings


def _ini_name(name: str) -> str:
    return f"certkit_{name}"


def _opt_name(name: str) -> str:
    return "--certkit-" + name.replace("_", "-")


def _parse_bool(text) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("certkit", "certkit: certification requirements")
    for name, (kind, default, help_text) in {**SETTINGS, **_RUN_OPTIONS}.items():
        if kind is bool:
            group.addoption(_opt_name(name), action="store_const", const=True, default=None, dest=f"certkit_{name}", help=help_text)
        else:
            group.addoption(_opt_name(name), action="store", default=None, dest=f"certkit_{name}", metavar=name.upper(),
                            help=f"{help_text} (default {default})")
        parser.addini(_ini_name(name), help=help_text, default=None)


def _convert(name: str, kind, value, source: str):
    try:
        if kind is bool:
            return _parse_bool(value)
        if kind is float:
            return float(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value)) if not isinstance(value, int) else value
        return str(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"certkit: {source} {name} = {value!r} is not a valid {kind.__name__}") from None


def _validate(name: str, value, source: str):
    def bad(why):
        raise pytest.UsageError(f"certkit: {source} {name} = {value!r}: {why}")

    if value is None:
        return value
    if name == "sigma" and not (value > 0 and math.isfinite(value)):
        bad("sigma must be > 0")
    if name == "beta" and not (0 <= value < 1):
        bad("beta must lie in [0, 1) (0 turns text noise off)")
    if name in ("alpha", "threshold") and not (0 < value < 1):
        bad(f"{name} must lie strictly between 0 and 1")
    if name == "timeout" and not (value > 0 and math.isfinite(value)):
        bad("timeout must be a positive number of seconds")
    if name == "n_max" and value < 1:
        bad("n_max must be a positive integer")
    if name == "kernel" and value not in ("uniform", "mask"):
        bad("kernel must be 'uniform' or 'mask'")
    if name == "min_pass_rate" and not (0 <= value <= 1):
        bad("min_pass_rate must lie in [0, 1]")
    return value


def _from_cli_or_ini(config: pytest.Config, name: str, kind, default):
    cli = config.getoption(f"certkit_{name}")
    if cli is not None:
        return _validate(name, _convert(name, kind, cli, "option " + _opt_name(name)), "option " + _opt_name(name))
    ini = config.getini(_ini_name(name))
    if ini not in (None, "", []):
        return _validate(name, _convert(name, kind, ini, "ini key " + _ini_name(name)), "ini key " + _ini_name(name))
    return default


def resolve_settings(config: pytest.Config, item: pytest.Item | None) -> dict:
    """Settings for one test: command line > closest ``certkit`` marker > ini > defaults."""
    out = {}
    marker_values: dict = {}
    if item is not None:
        for marker in reversed(list(item.iter_markers("certkit"))):  # module first, function last wins
            if marker.args:
                raise pytest.UsageError(f"certkit marker on {item.nodeid}: use keyword arguments, e.g. @pytest.mark.certkit(sigma=0.5)")
            unknown = set(marker.kwargs) - set(SETTINGS)
            if unknown:
                raise pytest.UsageError(f"certkit marker on {item.nodeid}: unknown setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
            marker_values.update(marker.kwargs)
    for name, (kind, default, _) in SETTINGS.items():
        cli = config.getoption(f"certkit_{name}")
        if cli is not None:
            source = "option " + _opt_name(name)
            out[name] = _validate(name, _convert(name, kind, cli, source), source)
        elif name in marker_values:
            source = f"marker on {item.nodeid}"
            if marker_values[name] is None and name != "outcome":
                from .errors import RequirementError

                raise RequirementError(f"{source}: {name}=None is not a value; give a {kind.__name__} "
                                       f"or leave the key out to use the default ({default})")
            out[name] = _validate(name, _convert(name, kind, marker_values[name], source) if marker_values[name] is not None else None, source)
        else:
            out[name] = _from_cli_or_ini(config, name, kind, default)
    return out


@dataclass
class RunState:
    """Controller-side collection of results, and the run's settings."""

    seed: int = 0
    json_path: str = "reports/results.json"
    report_path: str | None = "reports/audit.html"
    baseline_path: str | None = None
    baseline: dict | None = None
    update_baseline: bool = False
    history_path: str | None = "reports/history.jsonl"
    cache_dir: str | None = "reports/.cache"
    min_pass_rate: float | None = None
    allow_inconclusive: bool = False
    devices: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # wall clock, for the record
    started_monotonic: float = field(default_factory=time.monotonic)  # for the duration: immune to clock changes
    results: dict = field(default_factory=dict)  # nodeid -> record
    cases: dict = field(default_factory=dict)  # content hash -> case summary (prompt, thumbnail)


_STATE = pytest.StashKey[RunState]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _nvidia_smi(query: str) -> list[str] | None:
    """``nvidia-smi --query-gpu=QUERY`` lines, or None where nvidia-smi is absent or fails."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else None


def _visible_devices(config: pytest.Config) -> list[str]:
    option = _from_cli_or_ini(config, "devices", str, None)
    if option:
        wanted = [d.strip() for d in option.split(",") if d.strip()]
        present = _nvidia_smi("index,uuid")
        if present is not None:  # where nvidia-smi answers, every id must name one of its GPUs (index or UUID)
            known = {part.strip() for line in present for part in line.split(",")}
            missing = [d for d in wanted if d not in known]
            if missing:
                listed = ", ".join(line.split(",")[0].strip() for line in present) or "none"
                raise pytest.UsageError(f"certkit: option --certkit-devices names GPU(s) {missing} that nvidia-smi does not list "
                                        f"(it lists: {listed}); pass ids it lists")
        return wanted
    env = _env_devices()
    if env or os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return env
    return _nvidia_smi("index") or []


def _env_devices() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"] if env is not None else []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "certkit(**settings): certkit settings (sigma, beta, kernel, alpha, threshold, n_max, outcome)")
    state = RunState()
    cache = _from_cli_or_ini(config, "cache_dir", str, "reports/.cache")
    state.cache_dir = None if cache.lower() in ("none", "") else cache
    state.json_path = _from_cli_or_ini(config, "json", str, "reports/results.json")
    report = _from_cli_or_ini(config, "report", str, "reports/audit.html")
    state.report_path = None if report.lower() in ("none", "") else report
    state.min_pass_rate = _from_cli_or_ini(config, "min_pass_rate", float, None)
    state.allow_inconclusive = _from_cli_or_ini(config, "allow_inconclusive", bool, False)
    if _is_worker(config):
        wi = config.workerinput
        state.seed = int(wi.get("certkit_seed", 0))
        devices = wi.get("certkit_devices") or []
        if devices:  # pin this worker to one GPU before any CUDA call
            index = int(str(wi.get("workerid", "gw0")).lstrip("gw") or 0)
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
        state.devices = [os.environ.get("CUDA_VISIBLE_DEVICES", "")] if devices else []
        if not devices and "OMP_NUM_THREADS" not in os.environ:
            _share_cores(int(wi.get("workercount", 1)))
    else:
        state.seed = _from_cli_or_ini(config, "seed", int, 0)
        # nvidia-smi is asked only when xdist workers will be pinned, not on every pytest run of any project
        uses_workers = bool(getattr(config.option, "numprocesses", None)) or config.getoption("certkit_devices") is not None
        state.devices = _visible_devices(config) if uses_workers else _env_devices()
        history = _from_cli_or_ini(config, "history", str, "reports/history.jsonl")
        state.history_path = None if history.lower() in ("none", "") else history
        state.baseline_path = _from_cli_or_ini(config, "baseline", str, None)
        state.update_baseline = _from_cli_or_ini(config, "update_baseline", bool, False)
        if state.update_baseline and not state.baseline_path:
            raise pytest.UsageError("certkit: --certkit-update-baseline needs --certkit-baseline FILE (where to write it)")
        from .regression import ResultsError, load_results, read_history

        if state.baseline_path and not state.update_baseline:
            try:
                state.baseline = load_results(state.baseline_path, "baseline")
            except ResultsError as exc:
                raise pytest.UsageError(f"certkit: {exc}; create it with --certkit-update-baseline") from None
        if state.history_path:
            try:
                read_history(state.history_path)
            except ResultsError as exc:
                raise pytest.UsageError(f"certkit: {exc}; or pass --certkit-history none") from None
        for name, (kind, default, _) in SETTINGS.items():  # fail fast on bad options and ini values
            _from_cli_or_ini(config, name, kind, default)
        config.pluginmanager.register(_Controller(state), "certkit-controller")
    config.stash[_STATE] = state


def _share_cores(workers: int) -> int:
    """A CPU worker's share of the cores this process may run on (at least one thread): torch's default of one
    thread per core in every worker oversubscribes the machine (2 workers on 2 cores ran 15x slower). Set for
    torch now if it is loaded, and through OMP_NUM_THREADS for a torch loaded later. Not called where the user
    set OMP_NUM_THREADS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run with xdist absent or disabled (-p no:xdist) has no such hook
def pytest_configure_node(node) -> None:
    """xdist (controller): hand the run seed and the device list to each worker."""
    state = node.config.stash[_STATE]
    node.workerinput["certkit_seed"] = state.seed
    node.workerinput["certkit_devices"] = state.devices


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config):
    """``-n auto``: one worker per visible GPU; xdist's default (CPU count) when there is none."""
    devices = _visible_devices(config)
    return len(devices) if devices else None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def certkit_model():
    raise pytest.UsageError(
        "certkit: define a session-scoped `certkit_model` fixture in your conftest.py returning a model adapter, e.g. "
        "certkit.models.VisionLanguageModel.from_pretrained(path) or certkit.models.TorchClassifier(module, ...)"
    )


@pytest.fixture(scope="session")
def certkit_oracle():
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
    from .errors import CertkitError

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


class CertkitRequirement:
    """The ``certkit`` fixture: certify, frontier and assert for the current test, recording every certificate."""

    def __init__(self, request: pytest.FixtureRequest, model, oracle, smoothed_cache: dict):
        self._request = request
        self._item = request.node
        self.settings = resolve_settings(request.config, request.node)
        self._model, self._oracle = model, oracle
        self._cache = smoothed_cache
        self.certificates: list = []

    def _smoothed(self, sigma, beta, kernel, edits):
        """The smoothed model for these settings. A model that takes no text noise (a served model through the chat
        protocol without a word alphabet) is smoothed over the image only where the requirement edits no token;
        where it does, Smoothed refuses it with the model's reason."""
        from .noise import Gaussian, Mask, UniformReplace
        from .smoothing import Smoothed, refuse_text_noise

        state = self._request.config.stash[_STATE]
        if getattr(self._model, "no_text_noise", None) and beta:
            if edits:
                refuse_text_noise(self._model)
            beta = 0.0
        key = (id(self._model), id(self._oracle), sigma, beta, kernel)
        if key not in self._cache:
            text = None
            if beta:
                text = Mask(beta) if kernel == "mask" else UniformReplace(beta, int(self._model.alphabet.numel()))
            self._cache[key] = Smoothed(self._model, self._oracle, image=Gaussian(sigma), text=text, seed=state.seed,
                                        cache=state.cache_dir)
        return self._cache[key]

    def _settings(self, overrides: dict) -> dict:
        s = dict(self.settings)
        for name, value in overrides.items():
            if value is not None:
                s[name] = _validate(name, value, "argument")
        if s.get("outcome") is None:
            raise pytest.UsageError(f"certkit: no outcome for {self._item.nodeid}: pass outcome=... or set it in the certkit marker / ini")
        return s

    def _record(self, cert, case) -> None:
        self.certificates.append(cert)
        self._item.user_properties.append((_PROPERTY, json.dumps(cert.to_dict(), sort_keys=True)))
        if not any(k == _CASE and json.loads(v)["hash"] == case.content_hash for k, v in self._item.user_properties):
            self._item.user_properties.append((_CASE, json.dumps(case_summary(case), sort_keys=True)))

    def certify(self, case, *, edits: int = 0, radius: float = 0.0, outcome: str | None = None, alpha=None, threshold=None,
                n_max=None, sigma=None, beta=None):
        s = self._settings(dict(outcome=outcome, alpha=alpha, threshold=threshold, n_max=n_max, sigma=sigma, beta=beta))
        smoothed = self._smoothed(s["sigma"], s["beta"], s["kernel"], edits)
        with _deadline(s.get("timeout")):
            cert = smoothed.certify(case, radius=radius, edits=edits, outcome=s["outcome"], alpha=s["alpha"], threshold=s["threshold"],
                                    n_max=s["n_max"])
        self._record(cert, case)
        return cert

    def frontier(self, case, *, max_edits: int | None = None, outcome: str | None = None, n: int = 10_000, alpha=None, threshold=None,
                 sigma=None, beta=None):
        s = self._settings(dict(outcome=outcome, alpha=alpha, threshold=threshold, sigma=sigma, beta=beta))
        smoothed = self._smoothed(s["sigma"], s["beta"], s["kernel"], max_edits)
        with _deadline(s.get("timeout")):
            cert = smoothed.frontier(case, max_edits=max_edits, outcome=s["outcome"], n=n, alpha=s["alpha"], threshold=s["threshold"])
        self._record(cert, case)
        return cert

    def assert_certified(self, case, *, edits: int = 0, radius: float = 0.0, outcome: str | None = None, **kwargs):
        """Certify and fail the test unless certified (inconclusive fails too unless allowed)."""
        cert = self.certify(case, edits=edits, radius=radius, outcome=outcome, **kwargs)
        if cert.certified:
            return cert
        state = self._request.config.stash[_STATE]
        if cert.status == "inconclusive" and state.allow_inconclusive:
            return cert
        message = failure_message(cert)
        if state.min_pass_rate is not None:
            pytest.xfail(f"counted against --certkit-min-pass-rate: {message}")
        pytest.fail(message, pytrace=False)


def failure_message(cert) -> str:
    from . import bounds
    from .noise import Gaussian, Mask, UniformReplace

    req = f"{cert.outcome!r} at {cert.edits} token edit(s), image l2 radius {cert.radius:g}, tau = {cert.threshold:g}"
    lines = [
        f"{cert.status.upper()}: case {cert.case_id!r} is not certified {req}",
        f"  p_A in [{cert.p_a_lower:.6f}, {cert.p_a_upper:.6f}] at confidence {1 - cert.alpha:g} after n = {cert.n} samples "
        f"({cert.successes} with the outcome; counts {cert.label_counts})",
        f"  needed p_A >= p* = {cert.p_star:.6f}; worst case p_adv = {cert.p_adv:.6g} (needs >= {cert.threshold:g})",
    ]
    try:
        image = Gaussian(cert.image_kernel["sigma"]) if cert.image_kernel else None
        tk = cert.text_kernel or {}
        text = UniformReplace(tk["beta"], tk["vocab_size"]) if tk.get("kind") == "uniform_replace" else (Mask(tk["beta"]) if tk else None)
        if image is not None and cert.p_a_lower > 0:
            r = float(bounds.max_radius(cert.p_a_lower, image, text, cert.edits, cert.threshold))
            lines.append(f"  with this p_A bound the largest certified radius at {cert.edits} edit(s) is "
                         f"{'none' if r == -math.inf else f'{r:.4f}'}")
    except (KeyError, TypeError, ValueError):
        pass
    if cert.status == "inconclusive":
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
    from .errors import CertkitError

    for name, value in (("certkit_model", certkit_model), ("certkit_oracle", certkit_oracle)):
        if value is None:
            raise CertkitError(f"the `{name}` fixture returned None; it must return the "
                               f"{'model adapter' if name == 'certkit_model' else 'oracle'} (a missing `return`?)")
    return CertkitRequirement(request, certkit_model, certkit_oracle, _certkit_smoothed_cache)


# --------------------------------------------------------------------------- results on the controller


_REQUIREMENT = "certkit_requirement"
_CRASH = re.compile(r"worker '[^']+' crashed while running")


def pytest_collection_modifyitems(items) -> None:
    """Tag the tests that use the ``certkit`` fixture: the tag travels with every report of the test."""
    for item in items:
        if "certkit" in getattr(item, "fixturenames", ()):
            item.user_properties.append((_REQUIREMENT, "1"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A :class:`~certkit.errors.CertkitError` (a case, model output, oracle or requirement certkit refuses)
    fails its test with the message alone, no traceback: the requirement could not be evaluated, and the
    results record it as ``error``. Any other exception keeps its traceback."""
    from .errors import CertkitError

    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None:
        return
    exc = call.excinfo.value
    if report.failed and isinstance(exc, CertkitError):
        report.longrepr = f"ERROR: certkit could not evaluate {item.nodeid}: {exc}"
    is_requirement = any(k == _REQUIREMENT for k, _ in item.user_properties)
    if is_requirement and isinstance(exc, Exception) and not isinstance(exc, AssertionError):
        # the requirement could not be evaluated: an error whatever the markers (xfail turns it into "xfailed")
        text = str(exc) if isinstance(exc, CertkitError) else f"{type(exc).__name__}: {exc}"
        report.user_properties.append((_ERROR, text[:2000]))


def _certkit_error_names() -> set[str]:
    """Qualified names of CertkitError and every subclass loaded so far (an error raised was loaded)."""
    from .errors import CertkitError

    names, todo = set(), [CertkitError]
    while todo:
        cls = todo.pop()
        names.add(f"{cls.__module__}.{cls.__qualname__}")
        todo += cls.__subclasses__()
    return names


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A case file that ``load_cases`` refuses while a test module is imported stops the collection with the
    message (file, line, field and fix) alone, not the import traceback. The collect report keeps only the
    exception's text, whose prefix is its qualified class name."""
    outcome = yield
    report = outcome.get_result()
    message = getattr(getattr(report.longrepr, "reprcrash", None), "message", "") if report.failed else ""
    cls, _, text = message.partition(": ")
    if text and cls in _certkit_error_names():
        report.longrepr = f"ERROR: certkit could not collect {collector.nodeid}: {text}"


def _collect(state: RunState, report: pytest.TestReport) -> None:
    is_requirement = any(k == _REQUIREMENT for k, _ in report.user_properties)
    # xdist reports a test whose worker died with when="???" and this message (and no user_properties)
    crashed = report.failed and report.when == "???" and bool(_CRASH.match(str(report.longrepr or "")))
    if not (is_requirement or crashed):
        return
    certs = [json.loads(v) for k, v in report.user_properties if k == _PROPERTY]
    for k, v in report.user_properties:
        if k == _CASE:
            case = json.loads(v)
            state.cases.setdefault(case["hash"], case)
    record = state.results.get(report.nodeid)
    if report.when in ("call", "???") or (report.when == "setup" and report.outcome != "passed") or certs:
        if record is None:
            record = state.results[report.nodeid] = {"nodeid": report.nodeid, "certificates": [], "test_outcome": None, "error": None}
        seen = {json.dumps(c, sort_keys=True) for c in record["certificates"]}
        record["certificates"].extend(c for c in certs if json.dumps(c, sort_keys=True) not in seen)
        if report.when == "call" or report.outcome != "passed":
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            if crashed:
                record["error"] = "the worker running this requirement crashed: " + _short_longrepr(report)
            record["test_outcome"] = outcome
            record["duration_s"] = round(report.duration, 4)
            if report.outcome == "failed" and not any(c["status"] != "certified" for c in record["certificates"]):
                record["error"] = _short_longrepr(report)
            if report.when == "setup":
                record["error"] = _short_longrepr(report)
        errors = [v for k, v in report.user_properties if k == _ERROR]
        if errors:
            record["error"] = errors[-1]


def _short_longrepr(report) -> str:
    text = str(report.longrepr) if report.longrepr is not None else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-6:])[:2000]


def _status(record: dict) -> str:
    certs = record["certificates"]
    if record.get("error") or (record["test_outcome"] == "failed" and not certs):
        return "error"
    if not certs:
        return "error" if record["test_outcome"] == "failed" else "no requirement"
    statuses = [c["status"] for c in certs]
    for status in ("not certified", "inconclusive"):
        if status in statuses:
            return status
    return "certified"


def summarize(state: RunState) -> dict:
    counts = {"certified": 0, "not certified": 0, "inconclusive": 0, "error": 0}
    samples = forward = 0
    for record in state.results.values():
        status = _status(record)
        if status in counts:
            counts[status] += 1
        for c in record["certificates"]:
            samples += c["n"]
            forward += int(c.get("timings", {}).get("forward_samples", 0))
    total = sum(counts.values())
    return {"requirements": total, **counts, "pass_rate": (counts["certified"] / total) if total else None,
            "samples": samples, "forward_samples": forward}


def _git() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def _packages() -> dict:
    from importlib import metadata

    out = {}
    for name in ("certkit", "torch", "transformers", "accelerate", "numpy", "scipy", "pytest", "pytest-xdist"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_metadata(config: pytest.Config, state: RunState) -> dict:
    from . import __version__

    certs = [c for r in state.results.values() for c in r["certificates"]]
    return {
        "certkit_version": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.monotonic() - state.started_monotonic, 3),
        "git": _git(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _packages(),
        "seed": state.seed,
        "devices": state.devices,
        "workers": getattr(config.option, "numprocesses", None) or 0,
        "args": list(config.invocation_params.args),
        "settings": {name: _from_cli_or_ini(config, name, kind, default) for name, (kind, default, _) in SETTINGS.items()},
        "gate": {"min_pass_rate": state.min_pass_rate, "allow_inconclusive": state.allow_inconclusive},
        "models": sorted({c["model_fingerprint"] for c in certs}),
        "oracles": sorted({c["oracle_fingerprint"] for c in certs}),
    }


def _incomplete(session: pytest.Session, state: RunState) -> list[str]:
    """Why the run did not evaluate every requirement it collected (empty when it did)."""
    reasons = []
    if getattr(state, "terminated", False):
        reasons.append("terminated by SIGTERM")
    elif session.exitstatus == pytest.ExitCode.INTERRUPTED:
        reasons.append("interrupted (Ctrl-C, or pytest stopped the run)")
    for stop in (session.shouldstop, session.shouldfail):
        if stop:
            reasons.append(f"stopped early: {stop}")
    errors = getattr(state, "collection_errors", 0)
    if errors:
        reasons.append(f"{errors} collection error(s): some requirements were never collected")
    return reasons


def _gate_reason(summary: dict, state: RunState, comparison: dict | None) -> str:
    """One sentence: which rules decided the gate, with their numbers (terminal, results.json, report)."""
    failing, passing = [], []
    if summary.get("incomplete"):
        failing.append("the run did not finish (" + "; ".join(summary["incomplete"]) + ")")
    if summary["error"]:
        failing.append(f"{summary['error']} requirement(s) could not be evaluated")
    rate = summary["pass_rate"]
    if state.min_pass_rate is not None:
        text = f"pass rate {'n/a' if rate is None else f'{100 * rate:.1f}%'} against the required {100 * state.min_pass_rate:.1f}%"
        (failing if rate is not None and rate < state.min_pass_rate else passing).append(text)
    else:
        if summary["not certified"]:
            failing.append(f"{summary['not certified']} requirement(s) not certified (each must be)")
        if summary["inconclusive"] and not state.allow_inconclusive:
            failing.append(f"{summary['inconclusive']} requirement(s) inconclusive (allow with --certkit-allow-inconclusive)")
        if not failing:
            passing.append(f"all {summary['certified']} evaluated requirement(s) certified")
    if state.baseline is not None:
        if comparison is None:
            failing.append(f"the comparison with the baseline {state.baseline_path} failed")
        elif comparison["regressions"]:
            failing.append(f"{len(comparison['regressions'])} regression(s) against the baseline {state.baseline_path}")
        else:
            passing.append(f"no regression against the baseline {state.baseline_path}")
    verdict = summary["gate"].upper()
    return f"{verdict}: " + "; ".join(failing if summary["gate"] != "passed" else passing)


def _finish(session: pytest.Session, state: RunState) -> None:
    config = session.config
    if not state.results:
        return
    summary = summarize(state)
    if state.min_pass_rate is not None:
        gate_failed = summary["pass_rate"] is not None and summary["pass_rate"] < state.min_pass_rate
    else:  # every requirement must be certified (inconclusive ones too, unless allowed)
        gate_failed = summary["not certified"] > 0 or (summary["inconclusive"] > 0 and not state.allow_inconclusive)
    summary["gate"] = "failed" if gate_failed or summary["error"] else "passed"
    incomplete = _incomplete(session, state)
    if incomplete:  # what finished is kept and written; the gate cannot pass on a run that did not finish
        summary["gate"], summary["incomplete"] = "incomplete", incomplete
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    results = []
    for nodeid in sorted(state.results):
        record = dict(state.results[nodeid])
        record["status"] = _status(record)
        results.append(record)
    document = {"schema": RESULTS_SCHEMA, "run": run_metadata(config, state), "summary": summary, "results": results,
                "cases": state.cases}
    state.written, state.write_errors = [], []  # type: ignore[attr-defined]
    from .regression import append_history, compare, read_history
    from .report import write_report

    # nothing below may stop the results from being written: a failure here is reported, and fails the run
    comparison = None
    if state.baseline is not None:
        try:
            comparison = compare(state.baseline, document)
        except Exception as exc:  # noqa: BLE001 - the baseline was checked on load; still, never lose the results
            state.write_errors.append(f"could not compare with the baseline {state.baseline_path}: {type(exc).__name__}: {exc}")
        else:
            document["baseline"] = {"path": state.baseline_path, **{k: comparison[k] for k in ("regressions", "improvements", "new", "removed")}}
        if (comparison is None or comparison["regressions"]) and summary["gate"] != "incomplete":
            summary["gate"] = "failed"  # a regression, or a comparison that could not be made
        if summary["gate"] != "passed" and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    state.comparison = comparison  # type: ignore[attr-defined]
    summary["gate_reason"] = _gate_reason(summary, state, comparison)
    history = []
    if state.history_path:
        try:
            append_history(state.history_path, document)
            history = read_history(state.history_path)
        except (OSError, ValueError) as exc:  # ResultsError is a ValueError
            state.write_errors.append(f"could not append to {state.history_path}: {getattr(exc, 'strerror', None) or exc}")  # type: ignore[attr-defined]

    def report(doc, path):
        return write_report(doc, path, baseline=comparison, history=history)

    targets = [(Path(state.json_path), write_results)]
    if state.report_path:
        targets.append((Path(state.report_path), report))
    if state.update_baseline:
        targets.append((Path(state.baseline_path), write_results))
    for path, write in targets:
        try:
            write(path, document) if write is write_results else write(document, path)
            state.written.append(str(path))  # type: ignore[attr-defined]
        except OSError as exc:
            cause = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else "")
            message = f"could not write {path}: {cause}"
            if write is write_results and path == Path(state.json_path):  # never lose the results: fall back to a temporary file
                import tempfile

                fallback = Path(tempfile.gettempdir()) / f"certkit-results-{os.getpid()}-{int(time.time())}.json"
                try:
                    write_results(fallback, document)
                    message += f"; the results were saved to {fallback} instead"
                except OSError:
                    message += "; the results could not be saved anywhere"
            state.write_errors.append(message)  # type: ignore[attr-defined]
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    if gate_failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    state.summary = summary  # type: ignore[attr-defined]


def _terminal_summary(terminalreporter, state: RunState) -> None:
    summary = getattr(state, "summary", None)
    if summary is None:
        return
    tr = terminalreporter
    tr.section("certkit")
    tr.write_line(
        f"{summary['requirements']} requirements: {summary['certified']} certified, {summary['not certified']} not certified, "
        f"{summary['inconclusive']} inconclusive, {summary['error']} errors"
    )
    rate = summary["pass_rate"]
    tr.write_line(f"samples used: {summary['samples']} ({summary['forward_samples']} new forward passes, the rest from the cache); "
                  f"pass rate {'n/a' if rate is None else f'{100 * rate:.1f}%'}")
    passed = summary["gate"] == "passed"
    tr.write_line(f"gate: {summary['gate_reason']}" + ("" if not summary.get("incomplete") else
                  "; the results of the requirements that finished are kept"), red=not passed, green=passed)
    comparison = getattr(state, "comparison", None)
    if comparison is not None:
        regs = comparison["regressions"]
        tr.write_line(f"baseline {state.baseline_path}: {len(regs)} regressions, {len(comparison['improvements'])} improvements, "
                      f"{len(comparison['new'])} new, {len(comparison['removed'])} removed", red=bool(regs), green=not regs)
        for reg in regs[:50]:
            tr.write_line(f"  REGRESSED {reg['nodeid']}: {'; '.join(reg['reasons'])}", red=True)
    if state.update_baseline and state.baseline_path in getattr(state, "written", []):
        tr.write_line(f"baseline updated: {state.baseline_path}")
    for error in getattr(state, "write_errors", []):
        tr.write_line(f"certkit: {error}", red=True)
    if getattr(state, "written", None):
        tr.write_line("written: " + ", ".join(state.written))


class _Controller:
    """Registered on the controller (or the only process without xdist): gathers results, writes the file."""

    def __init__(self, state: RunState):
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        _collect(self.state, report)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.state.collection_errors = getattr(self.state, "collection_errors", 0) + 1

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session) -> None:
        """A SIGTERM (a CI timeout, a preempted job) ends the run like Ctrl-C, so what finished is written and the
        gate says incomplete. A handler the caller installed is left alone."""
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            def terminate(signum, frame):
                self.state.terminated = True
                raise KeyboardInterrupt("SIGTERM")

            self._previous_sigterm = signal.signal(signal.SIGTERM, terminate)

    def pytest_unconfigure(self, config) -> None:
        import signal

        if getattr(self, "_previous_sigterm", None) is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        _finish(session, self.state)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        _terminal_summary(terminalreporter, self.state)
