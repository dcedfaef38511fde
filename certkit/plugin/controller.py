"""The controller's plugin object: gathers the reports, ends the run, and tells the terminal and JUnit readers.

Registered on the xdist controller (or the only process without xdist). The run is finished in the first
``pytest_sessionfinish`` implementation, before junitxml and other reporters write their files, so a gate that
did not pass is reported to them as the failed test ``certkit::gate`` with its reason: CI systems that read only
the JUnit XML see it fail.
"""

from __future__ import annotations

import pytest

from ..gate import counts_text
from .recording import collect, is_requirement
from .results import finish
from .settings import run_settings, shown, uses_certkit
from .sharding import WORKER_KEY
from .state import RunState

GATE_NODEID = "certkit::gate"


def gate_report(summary: dict, results_file: str) -> pytest.TestReport:
    """The failed test report that stands for a gate that did not pass (failed or incomplete)."""
    text = f"certkit gate {summary['gate_reason']}\nresults: {results_file}"
    return pytest.TestReport(nodeid=GATE_NODEID, location=("certkit", None, "gate"), keywords={"certkit": 1},
                             outcome="failed", longrepr=text, when="call", duration=0.0, user_properties=[])


def junit_suite_properties(config: pytest.Config, summary: dict, state: RunState) -> None:
    """With --junitxml: the gate, its reason, the pass rate, the requirement count and the results file as test-suite
    properties, which every JUnit schema allows (xunit2 included). The same object ``record_testsuite_property``
    writes to; junitxml keeps it under this stash key."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # a pytest without it: the gate's failed test case still says it
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    rate = summary["pass_rate"]
    for name, value in (("certkit_gate", summary["gate"]), ("certkit_gate_reason", summary["gate_reason"]),
                        ("certkit_pass_rate", "n/a" if rate is None else f"{rate:.6f}"),
                        ("certkit_requirements", summary["requirements"]), ("certkit_results", shown(state.json_path, config))):
        xml.add_global_property(name, value)


def collection_error_line(report) -> str:
    """A collection error in one line: the collector's node id and the error's last line (certkit's own message for a
    case file it refuses; ``ModuleNotFoundError: ...`` for an import error; pytest's message for a marker it refuses)."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(longrepr or "")
    if isinstance(longrepr, str) and text.startswith("ERROR: certkit could not collect "):
        return text.removeprefix("ERROR: certkit could not collect ")[:500]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = (lines[-1].removeprefix("E").strip() if lines else "") or "collection failed"
    return f"{report.nodeid or 'the collection'}: {last}"[:500]


def settings_line(config: pytest.Config, state: RunState) -> str:
    """The run's certkit settings and gate, in one line (the report header)."""
    s = run_settings(config)
    gate = (f"pass rate >= {100 * state.min_pass_rate:g}%" if state.min_pass_rate is not None
            else "every requirement certified" + (" or inconclusive" if state.allow_inconclusive else ""))
    if state.baseline_path and not state.update_baseline:
        gate += f", baseline {shown(state.baseline_path, config)}" + (" (removed requirements allowed)" if state.allow_removed else "")
    shard = config.getoption("certkit_shard") or config.getini("certkit_shard")
    gate += f"; shard {shard}" if shard else ""
    return (f"certkit: seed {state.seed}, sigma {s['sigma']:g}, beta {s['beta']:g} ({s['kernel']}), alpha {s['alpha']:g}, "
            f"tau {s['threshold']:g}, n_max {s['n_max']}; gate: {gate}; results {shown(state.json_path, config)}")


def shows_header(config: pytest.Config) -> bool:
    """Whether pytest shows its header lines (not under -q or --no-header)."""
    return config.get_verbosity() >= 0 and not getattr(config.option, "no_header", False)


def terminal_summary(terminalreporter, state: RunState) -> None:
    """The ``certkit`` section at the end of the run: the shard, the status counts, samples, the gate and its reason,
    the baseline comparison (at most 50 regressions and 50 removed requirements listed), write errors and the files
    written. Nothing in a run that is not a certkit run (no summary)."""
    summary = state.summary
    if summary is None:
        return
    tr = terminalreporter
    config = tr.config
    tr.section("certkit")
    if not state.settings_shown and shows_header(config):  # a run that only its requirements made a certkit run, under xdist
        tr.write_line(settings_line(config, state))
    if state.shard is not None:
        shard = state.shard
        tr.write_line(f"shard {shard['index']}/{shard['total']}: {len(shard['requirements'])} requirement(s) of {shard['suite_tests']} "
                      f"collected test(s) ran here, split by case (planned cost {shard['planned_costs'][shard['index'] - 1]:,.0f} of "
                      f"{sum(shard['planned_costs']):,.0f}); this shard's exit status reflects the errors in its share: "
                      f"`certkit merge` the {shard['total']} shards' results files for the suite's gate")
    tr.write_line(counts_text(summary))
    rate = summary["pass_rate"]
    tr.write_line(f"samples: {summary['samples']} read by the requirements, {summary['forward_samples']} forward passes run (a case's "
                  "noisy samples are drawn in whole chunks, shared by its requirements and cached across runs, so the two can differ); "
                  f"pass rate {'n/a' if rate is None else f'{100 * rate:.1f}%'}")
    if summary.get("samples_per_second") is not None:
        tr.write_line(f"throughput: {summary['samples_per_second']:,.1f} samples/s ({summary['forward_samples']:,} forward passes in "
                      f"{summary['sampling_wall_s']:,.1f} s, from the first requirement's start to the last one's end)")
    passed = summary["gate"] == "passed"
    kept = ("; the results of the requirements that finished are kept" if state.results else
            "; no requirement ran, and the results, report and history say so")
    tr.write_line(f"gate: {summary['gate_reason']}" + (kept if summary.get("incomplete") else ""), red=not passed, green=passed)
    comparison = state.comparison
    if comparison is not None:
        from ..regression import counts_line, fingerprint_line, named_lines  # numpy and scipy: only for a run with a baseline

        bad = bool(comparison["regressions"]) or (bool(comparison["removed"]) and not state.allow_removed)
        changed = comparison.get("model_changed") or comparison.get("oracle_changed")
        tr.write_line(f"baseline {shown(state.baseline_path, config)}: {counts_line(comparison)}"
                      + (f"; {fingerprint_line(comparison)}" if changed else ""), red=bad, green=not bad)
        if state.shard is not None:
            tr.write_line("  (this shard's regressions and removed requirements are gated by `certkit merge --baseline`)")
        red = {"regressions": True, "removed": not state.allow_removed}
        for kind, line in named_lines(comparison, ("regressions", "improvements", "changed", "removed"), limit=50):
            allowed = " (allowed)" if kind == "removed" and state.allow_removed and not line.startswith("...") else ""
            more = f": see {shown(state.json_path, config)}" if line.startswith("...") else ""
            tr.write_line(f"  {line}{allowed}{more}", red=red.get(kind, False))
    if state.update_baseline and shown(state.baseline_path, config) in state.written:
        tr.write_line(f"baseline updated: {shown(state.baseline_path, config)}")
    for error in state.write_errors:
        tr.write_line(f"certkit: {error}", red=True)
    if state.written:
        tr.write_line("written: " + ", ".join(state.written))


class Controller:
    """Gathers results from every test report and writes them at the end of the session."""

    def __init__(self, state: RunState):
        self.state = state
        self._previous_sigterm = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold each test report into the results (:func:`~certkit.plugin.recording.collect`); the first certkit
        report arms the SIGTERM handler."""
        if getattr(report, "certkit", None) is not None:
            self._arm_sigterm()  # a certkit run, known from its first requirement
        collect(self.state, report)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: the controller collects nothing; a worker's collection is done
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        """Under xdist, the collection finished once a worker reports its collected ids."""
        self.state.collection_finished = True

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: the controller collects nothing, its workers report the shard
    def pytest_testnodedown(self, node, error) -> None:
        """Take the shard record from the first worker that finishes with one (every worker computes the same)."""
        share = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if share is not None and self.state.shard is None:
            self.state.shard, self.state.elsewhere = share["record"], frozenset(share["elsewhere"])

    def pytest_collectreport(self, report) -> None:
        """Keep each collection error as one line (where, and its message): a run with any is incomplete, and says why."""
        if report.failed:
            self.state.collection_errors.append(collection_error_line(report))

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        """Remember what ended the run: Ctrl-C or SIGTERM ("user"), or pytest's own stop (collection errors, -x)."""
        self.state.interrupted = (str(excinfo.value) or "stopped") if isinstance(excinfo.value, pytest.Session.Interrupted) else "user"

    @pytest.hookimpl(trylast=True)  # after certkit tagged the requirements
    def pytest_collection_modifyitems(self, config, items) -> None:
        """Arm the SIGTERM handler once the collection holds a certkit requirement (a project that uses the fixture and
        sets no certkit option), before the first one runs. Under xdist the workers collect, and the first certkit
        report arms it."""
        self.state.requirements_collected = sum(is_requirement(item) for item in items)
        self.state.collection_finished = True
        if self.state.requirements_collected:
            self._arm_sigterm()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session) -> None:
        """Arm the SIGTERM handler in a run configured for certkit."""
        if uses_certkit(session.config):
            self._arm_sigterm()

    def _arm_sigterm(self) -> None:
        """In a certkit run, a SIGTERM (a CI timeout, a preempted job) ends the run like Ctrl-C, so what finished is
        written and the gate says incomplete. A handler the caller installed is left alone, and a run that is not a
        certkit run keeps the default."""
        import signal
        import threading

        if self._previous_sigterm is not None:
            return
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            def terminate(signum, frame):
                self.state.terminated = True
                raise KeyboardInterrupt("SIGTERM")

            self._previous_sigterm = signal.signal(signal.SIGTERM, terminate)

    def pytest_unconfigure(self, config) -> None:
        """Put back the SIGTERM handler that was there before certkit armed its own."""
        import signal

        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    @pytest.hookimpl(tryfirst=True)  # before junitxml (and any other reporter) writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Finish the run (summary, gate, files, exit status) before any other reporter writes its files; a gate that
        did not pass becomes the failed test ``certkit::gate``, and the JUnit test-suite properties carry the gate."""
        finish(session, self.state)
        summary = self.state.summary
        if summary is None:  # not a certkit run
            return
        junit_suite_properties(session.config, summary, self.state)
        if summary["gate"] != "passed":
            session.testscollected += 1  # the gate is one more test: the progress counter counts it
            session.config.hook.pytest_runtest_logreport(report=gate_report(summary, shown(self.state.json_path, session.config)))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        """Write the ``certkit`` section (:func:`terminal_summary`)."""
        terminal_summary(terminalreporter, self.state)
