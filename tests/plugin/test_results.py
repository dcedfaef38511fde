"""The end of a run (certkit/plugin/results.py): the results file, the summary and the exit status, the pass-rate
gate and inconclusive requirements, and a results path that cannot be written."""

import json

import pytest

from tests.plugin.project import CONFTEST, _results


def test_results_file_schema_summary_and_exit_code(project):
    res = project.runpytest_subprocess("--certkit-json", "r.json", "--certkit-n-max", "500")
    doc = _results(project, "r.json")
    assert doc["schema"] == "certkit.results/1"
    run = doc["run"]
    for key in ("certkit_version", "git", "packages", "seed", "settings", "devices", "models", "oracles", "started", "duration_s"):
        assert key in run
    assert run["packages"]["torch"] and len(run["models"]) == 1 and run["oracles"][0].startswith("label@1:")
    s = doc["summary"]
    assert s["requirements"] == 8 and s["certified"] + s["not certified"] + s["inconclusive"] + s["error"] == 8
    assert s["not certified"] + s["inconclusive"] >= 1  # the 0.51 case at radius 0.2 cannot pass (p_A ~ 0.71 < 0.79)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*certkit*", "8 requirements: * certified, * not certified, * inconclusive, 0 errors",
                            "samples: * read by the requirements, * forward passes run (*"])
    res.stdout.fnmatch_lines(["*NOT CERTIFIED*c3*", "*needed p_A >= p[*] = *"])


def test_min_pass_rate_gate(project):
    ok = project.runpytest_subprocess("--certkit-json", "g.json", "--certkit-min-pass-rate", "0.5", "--certkit-n-max", "500")
    assert ok.ret == pytest.ExitCode.OK
    ok.stdout.fnmatch_lines(["*gate: PASSED: pass rate *% against the required 50.0%*"])
    strict = project.runpytest_subprocess("--certkit-json", "g.json", "--certkit-min-pass-rate", "1.0", "--certkit-n-max", "500")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*gate: FAILED: pass rate *% against the required 100.0%*"])
    doc = json.loads((project.path / "g.json").read_text())  # the same sentence in the results and the report
    assert doc["summary"]["gate_reason"].startswith("FAILED: pass rate ") and doc["summary"]["gate_reason"].endswith("required 100.0%")
    assert doc["summary"]["gate_reason"] in (project.path / "reports" / "audit.html").read_text()


def test_inconclusive_fails_unless_allowed(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_tie='''
import numpy as np
from certkit import Case

def test_tie(certkit):
    certkit.assert_certified(Case("tie", "hi", np.full((3, 8, 8), 0.5, dtype=np.float32)), radius=0.0, outcome="bright", beta=0.0, n_max=64)
''')
    strict = pytester.runpytest_subprocess("--certkit-json", "t.json")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert _results(pytester, "t.json")["results"][0]["status"] == "inconclusive"
    allowed = pytester.runpytest_subprocess("--certkit-json", "t.json", "--certkit-allow-inconclusive")
    assert allowed.ret == pytest.ExitCode.OK


def test_unwritable_results_path_is_reported(project):
    (project.path / "blocked").write_text("a file where a folder should be")
    res = project.runpytest_subprocess("--certkit-json", "blocked/r.json", "--certkit-n-max", "300", "--certkit-min-pass-rate", "0")
    assert res.ret == pytest.ExitCode.INTERNAL_ERROR
    res.stdout.fnmatch_lines(["*certkit: could not write blocked/r.json*the results were saved to *certkit-results-* instead*"])
    saved = res.stdout.str().split("the results were saved to ")[1].split(" instead")[0]
    assert json.loads(open(saved).read())["summary"]["requirements"] == 8
