"""What one pytest process knows about the certkit run: its settings and, on the controller, the results so far."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class RunState:
    """Settings of the run, and the controller-side collection of results (empty on xdist workers)."""

    seed: int = 0
    json_path: Path = Path("reports/results.json")
    report_path: Path | None = Path("reports/audit.html")
    baseline_path: Path | None = None
    baseline: dict | None = None
    update_baseline: bool = False
    history_path: Path | None = Path("reports/history.jsonl")
    cache_dir: Path | None = Path("reports/.cache")
    min_pass_rate: float | None = None
    allow_inconclusive: bool = False
    allow_removed: bool = False
    shard: dict | None = None  # this run's share of a sharded suite (see .sharding); None when not sharded
    elsewhere: frozenset = frozenset()  # node ids the suite has in the other shards (not "removed" from a baseline)
    settings_shown: bool = False  # the settings line is in the terminal (header or collection)
    devices: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # wall clock, for the record
    started_monotonic: float = field(default_factory=time.monotonic)  # for the duration: immune to clock changes
    results: dict = field(default_factory=dict)  # nodeid -> record
    cases: dict = field(default_factory=dict)  # content hash -> case summary (prompt, thumbnail)
    sources: dict = field(default_factory=dict)  # (path, sha256, format) -> a test-data source load_cases read (certkit.testdata)
    collection_errors: list[str] = field(default_factory=list)  # one line per collection error: where, and its message
    collection_finished: bool = False  # pytest got as far as the collection's end (modifyitems) in this process
    interrupted: str | None = None  # the KeyboardInterrupt that ended the run: "user" (Ctrl-C, SIGTERM) or pytest's reason
    requirements_collected: int = 0  # certkit requirements this process collected (0 on an xdist controller)
    terminated: bool = False  # a SIGTERM ended the run
    summary: dict | None = None  # set when the run is finished
    comparison: dict | None = None
    written: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)


STATE = pytest.StashKey[RunState]()
