"""Recording (certkit/plugin/recording.py): certificates reach the controller the same with and without xdist, and a
crashed worker loses no other requirement's result."""

import pytest

from tests.plugin.project import CONFTEST, _results


def _certs(doc):
    keep = ("case_id", "status", "n", "successes", "p_a_lower", "p_a_upper", "p_adv", "seed", "radius", "edits")
    return {r["nodeid"]: [{k: c[k] for k in keep} for c in r["certificates"]] for r in doc["results"]}


def test_same_certificates_with_and_without_xdist(project):
    a = project.runpytest_subprocess("-p", "no:cacheprovider", "--certkit-json", "a.json", "--certkit-cache-dir", "none",
                                     "--certkit-n-max", "2000")
    b = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--certkit-json", "b.json", "--certkit-cache-dir", "none",
                                     "--certkit-n-max", "2000")
    assert a.ret == b.ret
    ca, cb = _certs(_results(project, "a.json")), _certs(_results(project, "b.json"))
    assert len(ca) == 8 and ca == cb
    assert _results(project, "b.json")["run"]["workers"] == 2


def test_a_crashed_worker_loses_no_other_result(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_crash='''
import os
import numpy as np
import pytest
from certkit import Case

@pytest.mark.parametrize("i", range(6))
def test_req(certkit, i):
    if i == 3:
        os._exit(1)
    certkit.assert_certified(Case(f"c{i}", "hi", np.full((3, 8, 8), 0.9, dtype=np.float32)), radius=0.05, outcome="bright", beta=0.0)
''')
    res = pytester.runpytest_subprocess("-n", "2", "--certkit-json", "crash.json")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    doc = _results(pytester, "crash.json")
    status = {r["nodeid"].split("[")[-1].rstrip("]"): r["status"] for r in doc["results"]}
    assert status == {"0": "certified", "1": "certified", "2": "certified", "3": "error", "4": "certified", "5": "certified"}
    crashed = next(r for r in doc["results"] if r["nodeid"].endswith("[3]"))
    assert "crashed" in crashed["error"]
    assert doc["summary"]["error"] == 1 and doc["summary"]["gate"] == "failed"
