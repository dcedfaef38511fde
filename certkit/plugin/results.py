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
from ..testdata import summarize as summarize_test_data
from .progress import throughput
from .recording import status as requirement_status
from .settings import run_settings, shown
from .sharding import configured_shard
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
        "shard": state.shard if state.shard is not None else _uncollected_shard(config),
        "models": sorted({c["model_fingerprint"] for c in certs}),
        "oracles": sorted({c["oracle_fingerprint"] for c in certs}),
    }


def _uncollected_shard(config: pytest.Config) -> dict | None:
    """A shard stopped before its collection finished: its K/N without a share (``certkit merge`` says it never ran)."""
    try:
        shard = configured_shard(config)
    except pytest.UsageError:  # refused at configure already; not reached
        return None
    return None if shard is None else {"index": shard.index, "total": shard.total}


def _incomplete(session: pytest.Session, state: RunState) -> list[str]:
    """Why the run did not evaluate every requirement it collected (empty when it did): SIGTERM, Ctrl-C (said to be
    during the collection when it was), collection errors with their messages, -x or --maxfail."""
    reasons = []
    during = "" if state.collection_finished else " during the collection, before any requirement ran"
    errors = state.collection_errors
    interrupted = getattr(session, "exitstatus", None) == pytest.ExitCode.INTERRUPTED  # unset where pytester builds a node
    if state.terminated:
        reasons.append("terminated by SIGTERM" + during)
    elif state.interrupted == "user":
        reasons.append("interrupted (Ctrl-C)" + during)
    elif interrupted and not errors and not (session.shouldstop or session.shouldfail):
        reasons.append(f"interrupted ({state.interrupted or 'pytest stopped the run'})" + during)
    for stop in (session.shouldstop, session.shouldfail):
        if stop:
            reasons.append(f"stopped early: {stop}")
    if errors:
        stopped = interrupted and state.interrupted != "user"
        reasons.append(f"{len(errors)} collection error(s): " + ("pytest stopped before any test ran" if stopped else
                       "some requirements were never collected") + " (" + "; ".join(errors[:5])
                       + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "") + ")")
    return reasons


def _certkit_project(config: pytest.Config, state: RunState) -> bool:
    """Whether a run that stopped is a certkit run although it holds no result: it collected a requirement; or its
    collection did not finish or had errors (so its requirements may never have been collected) and a ``--certkit-*``
    option was given or a conftest defines ``certkit_model`` (ini keys alone do not count: a repository may keep them
    for audits beside unit tests that are no certkit run)."""
    import types

    from .settings import RUN_OPTIONS, SETTINGS

    if state.requirements_collected:
        return True
    if state.collection_finished and not state.collection_errors:
        return False
    if any(config.getoption(f"certkit_{name}") is not None for name in {**SETTINGS, **RUN_OPTIONS}):
        return True
    return any(isinstance(p, types.ModuleType) and Path(getattr(p, "__file__", None) or "").name == "conftest.py"
               and hasattr(p, "certkit_model") for p in config.pluginmanager.get_plugins())


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
    first requirement finished, or before or during the collection (a case file, marker or import error, Ctrl-C), writes
    its (empty, INCOMPLETE) results, report and history line too, with the reason, so no earlier run's files are taken
    for its own; an INCOMPLETE run never replaces the baseline (--certkit-update-baseline). A shard is gated on the
    errors in its share (:func:`certkit.gate.shard_rules`), the suite's gate is the merge's. A run that runs no test by
    design (--collect-only, --setup-only, --setup-plan) is not gated."""
    config = session.config
    runs_no_test = any(config.getoption(name, False) for name in ("collectonly", "setuponly", "setupplan"))
    stopped_early = _certkit_project(config, state) and bool(_incomplete(session, state))
    if runs_no_test or (not state.results and state.baseline is None and state.shard is None and not stopped_early):
        return
    # what did not finish is kept and written (the summary says why: _incomplete); the gate cannot pass on such a run
    document = build([{**record, "status": requirement_status(record)} for record in state.results.values()],
                     run_metadata(config, state), state.cases, _incomplete(session, state), summarize_test_data(state.sources.values()))
    summary = document["summary"]
    summary.update(throughput(config, summary["forward_samples"]))  # samples/s over the requirements' wall time
    state.written, state.write_errors = [], []
    from ..regression import compare  # the plugin composes the document and its comparison (results.py does not compare)
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
    gate.decide_document(document, comparison, baseline if state.baseline is not None else None)
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
    if state.update_baseline and summary["gate"] == gate.INCOMPLETE:
        state.write_errors.append(f"the baseline {baseline} was not updated: this run did not finish (gate INCOMPLETE)")
    elif state.update_baseline:
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
