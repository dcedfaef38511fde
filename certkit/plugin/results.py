"""The end of a certkit run on the controller: the summary, the gate and its reason, and the files written.

The gate is decided once, from :mod:`certkit.gate`'s one list of rules (errors, the pass rate or every requirement
certified, inconclusive ones, regressions and removed requirements against a baseline, a run that did not finish);
its verdict, its reason and the exit status all come from that decision, so a gate that did not pass never exits 0.

Nothing here may lose the results: a failure to compare, append or write is reported and fails the run, and the
results file falls back to a temporary file when its own path cannot be written.
"""

from __future__ import annotations

import os
import platform
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from .. import gate
from ..results import append_history, baseline_record, build, read_history, write_results
from .recording import status as requirement_status
from .settings import run_settings, shown
from .state import RunState


def gate_settings(state: RunState) -> dict:
    """The run's gate settings, as the results document records them and :func:`certkit.gate.rules` reads them."""
    return {"min_pass_rate": state.min_pass_rate, "allow_inconclusive": state.allow_inconclusive, "allow_removed": state.allow_removed}


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
    """The results document's ``run`` object: a run id, times, git commit, platform, every model's and oracle's
    fingerprint seen in the certificates, the seed, the settings (command line > ini > defaults), the gate settings
    and, for a sharded run, its share. Without git (or outside a repository) ``git`` is ``{"commit": None, "dirty": None}``."""
    from .. import __version__

    certs = [c for r in state.results.values() for c in r["certificates"]]
    return {
        # one id per run, for the printed report's page header and for filing: start time and a random suffix
        "run_id": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(state.started)) + "-" + secrets.token_hex(3),
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
        "settings": run_settings(config),
        "gate": gate_settings(state),
        "shard": state.shard,
        "models": sorted({c["model_fingerprint"] for c in certs}),
        "oracles": sorted({c["oracle_fingerprint"] for c in certs}),
    }


def _incomplete(session: pytest.Session, state: RunState) -> list[str]:
    """Why the run did not evaluate every requirement it collected (empty when it did)."""
    reasons = []
    if state.terminated:
        reasons.append("terminated by SIGTERM")
    elif session.exitstatus == pytest.ExitCode.INTERRUPTED:
        reasons.append("interrupted (Ctrl-C, or pytest stopped the run)")
    for stop in (session.shouldstop, session.shouldfail):
        if stop:
            reasons.append(f"stopped early: {stop}")
    errors = state.collection_errors
    if errors:
        reasons.append(f"{errors} collection error(s): some requirements were never collected")
    return reasons


def exit_status(current: int, verdict: str) -> int:
    """The one place the gate reaches the exit status: a gate that did not pass exits 1 where pytest would have exited
    0, or 5 (no test ran: a -k that deselected every requirement of the baseline), which CI scripts often let pass."""
    quiet = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    return pytest.ExitCode.TESTS_FAILED if verdict != gate.PASSED and current in quiet else current


def finish(session: pytest.Session, state: RunState) -> None:
    """Summarise, compare with the baseline, decide the gate (and so the exit status), append the history and write
    the results and the report. A run with a baseline is gated even if it evaluated no requirement (its -k
    deselected every one): the baseline's requirements are then missing from it. A shard writes its results even when
    its share holds no requirement, so `certkit merge` gets all N files. A run stopped (SIGTERM, Ctrl-C, -x) before its
    first requirement finished writes its (empty, INCOMPLETE) results too, so no earlier run's file is taken for its
    own. A run that runs no test by design (--collect-only, --setup-only, --setup-plan) is not gated."""
    config = session.config
    runs_no_test = any(config.getoption(name, False) for name in ("collectonly", "setuponly", "setupplan"))
    stopped_early = state.requirements_collected > 0 and bool(_incomplete(session, state))
    if runs_no_test or (not state.results and state.baseline is None and state.shard is None and not stopped_early):
        return
    # what did not finish is kept and written (the summary says why: _incomplete); the gate cannot pass on such a run
    document = build([{**record, "status": requirement_status(record)} for record in state.results.values()],
                     run_metadata(config, state), state.cases, _incomplete(session, state))
    summary = document["summary"]
    state.written, state.write_errors = [], []
    from ..regression import compare
    from ..report import write_report

    baseline = shown(state.baseline_path, config)

    # nothing below may stop the results from being written: a failure here is reported, and fails the run
    comparison = None
    if state.baseline is not None:
        try:
            comparison = compare(state.baseline, document, elsewhere=state.elsewhere)
        except Exception as exc:  # noqa: BLE001 - the baseline was checked on load; still, never lose the results
            state.write_errors.append(f"could not compare with the baseline {baseline}: {type(exc).__name__}: {exc}")
        else:
            document["baseline"] = baseline_record(baseline, comparison)
    state.comparison = comparison
    rules = gate.rules(summary, gate_settings(state), comparison, baseline if state.baseline is not None else None)
    summary["gate"], summary["gate_reason"] = gate.decide(summary, rules)
    session.exitstatus = exit_status(session.exitstatus, summary["gate"])
    history = []
    if state.history_path:
        try:
            append_history(state.history_path, document)
            history = read_history(state.history_path)
        except (OSError, ValueError) as exc:  # ResultsError is a ValueError
            state.write_errors.append(f"could not append to {shown(state.history_path, config)}: {getattr(exc, 'strerror', None) or exc}")

    def report(doc, path):
        return write_report(doc, path, baseline=comparison, history=history)

    targets = [(state.json_path, write_results)]
    if state.report_path:
        targets.append((state.report_path, report))
    if state.update_baseline:
        targets.append((state.baseline_path, write_results))
    for path, write in targets:
        try:
            write(path, document) if write is write_results else write(document, path)
            state.written.append(shown(path, config))
        except OSError as exc:
            cause = f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else "")
            message = f"could not write {shown(path, config)}: {cause}"
            if write is write_results and path == state.json_path:  # never lose the results: fall back to a temporary file
                import tempfile

                fallback = Path(tempfile.gettempdir()) / f"certkit-results-{os.getpid()}-{int(time.time())}.json"
                try:
                    write_results(fallback, document)
                    message += f"; the results were saved to {fallback} instead"
                except OSError:
                    message += "; the results could not be saved anywhere"
            state.write_errors.append(message)
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    state.summary = summary
