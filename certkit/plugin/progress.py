"""A live view of a long certkit run: requirements done / total, samples per second and an ETA, in pytest's terminal.

Every requirement's reports reach the controller's ``pytest_runtest_logreport`` (an xdist worker's too), each with the
certificates it made (:mod:`.recording`), so the controller counts the requirements finished and the samples drawn
(the forward passes the certificates record) as the run goes. The total is the number of requirements collected:
known to the one process without xdist, and sent by each worker with its requirements' reports (the xdist controller
collects nothing).

``--certkit-progress SECONDS`` (ini ``certkit_progress``, default 30) writes one line, at most every SECONDS, when a
requirement finishes::

    certkit progress: 412/1000 requirements (41%), 1,234,567 samples drawn, 412.3 samples/s, 49m54s elapsed, ETA 1h11m

``0`` writes one after every requirement, ``off`` none. Under ``-q`` it is off unless the option or the ini key is
given. Lines, on a terminal and in a CI log alike, rather than one line rewritten in place: pytest writes its dots and
its ``[NN%]`` on the current line, which a rewritten line would erase, and a CI log keeps every rewrite as a line. A run
shorter than SECONDS shows none. Samples per second are the samples drawn (forward passes run) over the wall time since
the first requirement's test began; the ETA is that time per requirement finished, times the requirements left.

The run's samples per second are recorded in results.json (:func:`throughput`): the summary's ``samples_per_second``
is its ``forward_samples`` over ``sampling_wall_s``, the wall time from the first requirement's test starting to the
last one's ending (collection, model loading in fixtures and writing the files are outside it).
"""

from __future__ import annotations

import json
import math
import time

import pytest

from .recording import is_requirement
from .settings import from_cli_or_ini, opt_name

__all__ = ["Progress", "RequirementCount", "register", "progress_interval", "progress_line", "duration_text", "throughput"]

#: seconds between two progress lines when neither the option nor the ini key says
DEFAULT_INTERVAL = 30.0
#: the report attribute that carries a worker's count of requirements to the controller (a report's extra attributes are
#: serialised by xdist, as recording's ``certkit`` payload is)
TOTAL_ATTRIBUTE = "certkit_requirements"
_PROGRESS = pytest.StashKey["Progress"]()
_COUNT = pytest.StashKey["RequirementCount"]()


def progress_interval(config: pytest.Config) -> float | None:
    """Seconds between two progress lines, None for none: the option, else the ini key, else 30 s, or None under ``-q``
    when neither is given. A value that is neither a number >= 0 nor ``off`` is a ``pytest.UsageError`` naming it."""
    text = from_cli_or_ini(config, "progress", str, None)
    if text is None:
        return None if config.get_verbosity() < 0 else DEFAULT_INTERVAL
    if text.strip().lower() in ("off", "none", "no", "false"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise pytest.UsageError(f"certkit: {opt_name('progress')} (ini certkit_progress) = {text!r}: give the seconds between "
                                "two progress lines (a number >= 0; 0 after every requirement) or off")
    return seconds


def duration_text(seconds: float) -> str:
    """A duration for a person: ``42s``, ``12m05s``, ``3h07m`` (rounded down to the unit shown)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(done: int, total: int, samples: int, elapsed: float | None) -> str:
    """The progress line: requirements done of ``total`` (0: not known yet) with the share, the samples drawn, samples
    per second and the ETA over ``elapsed`` (seconds since the first requirement's test began; None: none began)."""
    line = "certkit progress: " + (f"{done}/{total} requirements ({100 * done / total:.0f}%)" if total else f"{done} requirements")
    line += f", {samples:,} samples drawn"
    if elapsed is not None and elapsed > 0:
        line += f", {samples / elapsed:,.1f} samples/s, {duration_text(elapsed)} elapsed"
        if total and 0 < done < total:
            line += f", ETA {duration_text(elapsed / done * (total - done))}"
    return line


class RequirementCount:
    """Every process: counts the requirements this process will run, and on an xdist worker sends the count with
    each requirement's reports (attribute :data:`TOTAL_ATTRIBUTE`)."""

    def __init__(self, worker: bool):
        self.worker = worker
        self.count = 0

    @pytest.hookimpl(trylast=True)  # after -k, -m and the shard deselected theirs
    def pytest_collection_modifyitems(self, items) -> None:
        """Count the requirements left in the collection."""
        self.count = sum(is_requirement(item) for item in items)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        """On a worker, a requirement's report carries the worker's count (every worker collects the same suite)."""
        report = yield
        if self.worker and is_requirement(item):
            setattr(report, TOTAL_ATTRIBUTE, self.count)
        return report


class Progress:
    """The controller's live view: folds each requirement's report into the counts and writes a progress line at most
    every ``interval`` seconds (None: never) when a requirement finishes; keeps the wall time of the requirements'
    tests for :func:`throughput`."""

    def __init__(self, config: pytest.Config, interval: float | None, count: RequirementCount):
        self.config = config
        self.interval = interval
        self.count = count
        self.reported_total = 0
        self.done: set[str] = set()
        self.samples = 0  # forward passes the certificates record
        self.first_start: float | None = None  # wall clock (report.start is time.time() where the test ran)
        self.last_stop: float | None = None
        self.last_line = time.time()
        self.lines = 0

    @property
    def total(self) -> int:
        """The requirements this run will evaluate: collected here, or as a worker reports them (0: not known yet)."""
        return max(self.count.count, self.reported_total)

    @pytest.hookimpl(trylast=True)  # after the terminal reporter wrote this test's letter
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count a requirement finished (its call, a failed or skipped setup, or its worker's crash) and the samples its
        certificates drew; write the progress line when one is due."""
        payload = getattr(report, "certkit", None)
        crashed = report.failed and report.when == "???"  # xdist's report for the test its worker died running
        if payload is None and not crashed:
            return
        self.reported_total = max(self.reported_total, int(getattr(report, TOTAL_ATTRIBUTE, 0) or 0))
        if payload:
            for cert in json.loads(payload)["certificates"]:
                self.samples += int(cert.get("timings", {}).get("forward_samples", 0))
        if report.when == "call":
            start, stop = getattr(report, "start", None), getattr(report, "stop", None)
            if start is not None and stop is not None:
                self.first_start = start if self.first_start is None else min(self.first_start, start)
                self.last_stop = stop if self.last_stop is None else max(self.last_stop, stop)
        if report.when in ("call", "???") or (report.when == "setup" and report.outcome != "passed"):
            self.done.add(report.nodeid)
            self._maybe_write()

    def line(self, now: float | None = None) -> str:
        """The progress line as of ``now`` (default: the current time)."""
        now = time.time() if now is None else now
        elapsed = None if self.first_start is None else now - self.first_start
        total = self.total
        return progress_line(min(len(self.done), total) if total else len(self.done), total, self.samples, elapsed)

    def _maybe_write(self) -> None:
        now = time.time()
        if self.interval is None or now - self.last_line < self.interval:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:  # -p no:terminal
            return
        # under xdist pytest writes each test's letter without noting the line it began (write_line ends a line only when
        # it did), so that line is ended here; the terminal writer is where pytest keeps its width
        if not reporter.currentfspath and getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):
            reporter.write("\n")
        reporter.write_line(self.line(now))
        self.last_line = now
        self.lines += 1


def register(config: pytest.Config) -> None:
    """Register the requirement count on this process and, on the controller (or the one process), the live view;
    a bad ``--certkit-progress`` is a ``pytest.UsageError`` before any test runs."""
    worker = hasattr(config, "workerinput")
    count = RequirementCount(worker)
    config.stash[_COUNT] = count
    config.pluginmanager.register(count, "certkit-requirement-count")
    if not worker:
        progress = Progress(config, progress_interval(config), count)
        config.stash[_PROGRESS] = progress
        config.pluginmanager.register(progress, "certkit-progress")


def throughput(config: pytest.Config, forward_samples: int) -> dict:
    """What results.json's summary records of the run's speed: ``sampling_wall_s``, the wall time from the first
    requirement's test starting to the last one's ending, and ``samples_per_second``, ``forward_samples`` over it
    (both None where no requirement's test ran)."""
    progress = config.stash.get(_PROGRESS, None)
    if progress is None or progress.first_start is None or progress.last_stop is None or progress.last_stop <= progress.first_start:
        return {"sampling_wall_s": None, "samples_per_second": None}
    wall = progress.last_stop - progress.first_start
    return {"sampling_wall_s": round(wall, 3), "samples_per_second": round(forward_samples / wall, 3)}
