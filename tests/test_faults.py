"""Faults: an interrupted run resumes from the cache; a full disk loses no results."""

import json

import pytest

from tests.test_plugin import CONFTEST

SUITE = '''
import os
import signal
import numpy as np
import pytest
from certkit import Case

STOP_AT = int(os.environ.get("STOP_AT", "-1"))

@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("i", range(6))
def test_req(certkit, i):
    if i == STOP_AT:
        # the user presses Ctrl-C here. A shell starts background jobs with SIGINT ignored, and Python then
        # installs no handler; restore the interactive one, so the test does not depend on how it was launched
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGINT)
    certkit.assert_certified(Case(f"c{i}", "hi", np.full((3, 8, 8), 0.6 + 0.05 * i, dtype=np.float32)), radius=0.1, n_max=2000)
'''


def test_sigint_keeps_finished_results_and_the_rerun_reuses_them(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setenv("STOP_AT", "3")
    first = pytester.runpytest_subprocess()
    assert first.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    done = {r["nodeid"].split("[")[1].rstrip("]") for r in doc["results"] if r["status"] == "certified"}
    assert done == {"0", "1", "2"}  # what finished before the interrupt is kept
    monkeypatch.setenv("STOP_AT", "-1")
    second = pytester.runpytest_subprocess()
    assert second.ret == pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    cached = {r["nodeid"].split("[")[1].rstrip("]"): r["certificates"][0]["cached"] for r in doc["results"]}
    assert cached == {"0": True, "1": True, "2": True, "3": False, "4": False, "5": False}  # no finished requirement is repeated


def test_full_disk_for_the_report_loses_no_results(pytester):
    pytester.makeconftest(CONFTEST + '''

import errno
import certkit.report


def _full_disk(doc, path, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


certkit.report.write_report = _full_disk
''')
    pytester.makepyfile(test_suite=SUITE)
    res = pytester.runpytest_subprocess()
    assert res.ret == pytest.ExitCode.INTERNAL_ERROR
    res.stdout.fnmatch_lines(["*certkit: could not write reports/audit.html: No space left on device*"])
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["certified"] == 6  # the results file is intact


def test_full_disk_for_the_results_falls_back(pytester):
    pytester.makeconftest(CONFTEST + '''

import errno
import certkit.plugin

_real = certkit.plugin.write_results


def _full_disk_once(path, doc):
    if "certkit-results-" not in str(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return _real(path, doc)


certkit.plugin.write_results = _full_disk_once
''')
    pytester.makepyfile(test_suite=SUITE)
    res = pytester.runpytest_subprocess("--certkit-report", "none")
    assert res.ret == pytest.ExitCode.INTERNAL_ERROR
    res.stdout.fnmatch_lines(["*could not write reports/results.json: No space left on device; the results were saved to *"])
