"""Baselines, history, diff and merge: the regression tracking a release pipeline gates on."""

import json

import pytest

from certkit.cli import main
from certkit.regression import ResultsError, compare, merge
from tests.test_plugin import CONFTEST

# the model's brightness threshold comes from an environment variable, so a test can make it worse
TESTS = '''
import os
import numpy as np
import pytest
from certkit import Case

SHIFT = float(os.environ.get("BRIGHT_SHIFT", "0"))
CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), v - SHIFT, dtype=np.float32)) for i, v in enumerate([0.9, 0.7, 0.6])]

@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bright(certkit, case):
    certkit.assert_certified(case, radius=0.1, n_max=2000)
'''


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=TESTS)
    return pytester


def test_unchanged_run_passes_and_a_regression_fails_the_session(suite, monkeypatch):
    first = suite.runpytest_subprocess("--certkit-baseline", "base.json", "--certkit-update-baseline")
    assert first.ret == pytest.ExitCode.OK
    first.stdout.fnmatch_lines(["*baseline updated: base.json*"])
    same = suite.runpytest_subprocess("--certkit-baseline", "base.json")
    assert same.ret == pytest.ExitCode.OK
    same.stdout.fnmatch_lines(["*baseline base.json: 0 regressions*"])
    monkeypatch.setenv("BRIGHT_SHIFT", "0.1")  # the "new model" is darker: c2 drops to 0.5
    worse = suite.runpytest_subprocess("--certkit-baseline", "base.json", "--certkit-min-pass-rate", "0")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED  # the pass-rate gate alone would pass: the regression fails it
    worse.stdout.fnmatch_lines(["*baseline base.json: * regressions*", "*REGRESSED test_suite.py::test_bright[[]c2[]]: was certified, now *"])
    doc = json.loads((suite.path / "reports" / "results.json").read_text())
    assert any(r["nodeid"].endswith("[c2]") for r in doc["baseline"]["regressions"])
    html = (suite.path / "reports" / "audit.html").read_text()
    assert "REGRESSED: was certified" in html and "Compared with the baseline" in html


def test_missing_or_bad_baseline_is_a_usage_error(suite):
    res = suite.runpytest_subprocess("--certkit-baseline", "nope.json")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "baseline file 'nope.json' does not exist; create it with --certkit-update-baseline" in res.stderr.str()
    (suite.path / "bad.json").write_text('{"schema": "other"}')
    res = suite.runpytest_subprocess("--certkit-baseline", "bad.json")
    assert "is not a certkit results file" in res.stderr.str()
    res = suite.runpytest_subprocess("--certkit-update-baseline")
    assert "--certkit-update-baseline needs --certkit-baseline FILE" in res.stderr.str()


def test_history_grows_and_the_report_draws_the_trend(suite):
    for _ in range(2):
        suite.runpytest_subprocess()
    lines = (suite.path / "reports" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[-1])
    assert entry["requirements"] == 3 and 0 <= entry["pass_rate"] <= 1 and entry["mean_radius"] > 0
    assert 'id="trend"' in (suite.path / "reports" / "audit.html").read_text()


def test_sharded_runs_merge_into_one(suite, tmp_path, capsys):
    suite.runpytest_subprocess("-k", "c0 or c1", "--certkit-json", "s1.json")
    suite.runpytest_subprocess("-k", "c2", "--certkit-json", "s2.json")
    out = tmp_path / "merged.json"
    assert main(["merge", str(suite.path / "s1.json"), str(suite.path / "s2.json"), "-o", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["summary"]["requirements"] == 3 and len(merged["run"]["merged_from"]) == 2
    assert main(["report", str(out), "-o", str(tmp_path / "m.html")]) == 0
    # a shard from another model is refused unless forced
    other = json.loads((suite.path / "s2.json").read_text())
    other["run"]["models"] = ["another-model"]
    (suite.path / "s3.json").write_text(json.dumps(other))
    assert main(["merge", str(suite.path / "s1.json"), str(suite.path / "s3.json"), "-o", str(out)]) == 2
    assert "different models" in capsys.readouterr().err
    assert main(["merge", "--force", str(suite.path / "s1.json"), str(suite.path / "s3.json"), "-o", str(out)]) == 0


def test_diff_exit_codes_and_tolerances(suite, tmp_path, capsys):
    suite.runpytest_subprocess("--certkit-json", "a.json")
    a = json.loads((suite.path / "a.json").read_text())
    assert main(["diff", str(suite.path / "a.json"), str(suite.path / "a.json")]) == 0
    b = json.loads(json.dumps(a))
    cert = b["results"][0]["certificates"][0]
    cert["p_a_lower"] -= 0.01  # within the default tolerance of 0.02 ...
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert main(["diff", str(suite.path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert main(["diff", "--p-tolerance", "0.005", str(suite.path / "a.json"), str(tmp_path / "b.json")]) == 1  # ... not this one
    assert "REGRESSED" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["diff", str(tmp_path / "missing.json"), str(tmp_path / "b.json")])


def test_compare_and_merge_units():
    rec = lambda status, p: {"nodeid": "t::x", "status": status, "certificates": [{"status": status, "p_a_lower": p, "threshold": 0.5, "edits": 0,
                                                                                    "image_kernel": {"sigma": 0.5}, "text_kernel": None, "mode": "certify"}]}
    doc = lambda *r: {"schema": "certkit.results/1", "run": {"models": ["m"]}, "summary": {}, "results": list(r)}
    assert compare(doc(rec("certified", 0.99)), doc(rec("certified", 0.99)))["regressions"] == []
    reg = compare(doc(rec("certified", 0.99)), doc(rec("certified", 0.90)))["regressions"]
    assert reg and "max radius" in " ".join(reg[0]["reasons"])
    with pytest.raises(ResultsError, match="appears in both"):
        merge([doc(rec("certified", 0.9)), doc(rec("certified", 0.9))], ["a", "b"])


BROKEN_BODIES = [
    ("record without nodeid", {"results": [{"certificates": []}]}, "must be an object with a string 'nodeid'"),
    ("certificates not a list", {"results": [{"nodeid": "t", "certificates": 3}]}, "'certificates' must be a list"),
    ("unknown status", {"results": [{"nodeid": "t", "certificates": [{"status": "great"}]}]}, "known 'status'"),
    ("p_a_lower a string", {"results": [{"nodeid": "t", "certificates": [{"status": "certified", "p_a_lower": "high", "threshold": 0.5, "n": 3}]}]},
     "'p_a_lower' must be a number"),
    ("kernel unreadable", {"results": [{"nodeid": "t", "certificates": [{"status": "certified", "p_a_lower": 0.9, "threshold": 0.5, "n": 3,
                                                                          "image_kernel": {"sigma": "x"}}]}]}, "kernels or bounds cannot be read"),
]


@pytest.mark.parametrize("body, message", [row[1:] for row in BROKEN_BODIES], ids=[row[0] for row in BROKEN_BODIES])
def test_a_baseline_with_a_broken_body_is_a_usage_error_before_anything_runs(suite, body, message):
    (suite.path / "base.json").write_text(json.dumps({"schema": "certkit.results/1", **body}))
    res = suite.runpytest_subprocess("--certkit-baseline", "base.json")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str() and "base.json" in res.stderr.str()
    assert not (suite.path / "reports" / "results.json").exists()  # nothing ran


@pytest.mark.parametrize("line, message", [("not json", "line 2: not JSON"), ('{"finished": 3}', "line 2: 'finished' is 3"),
                                           ('[1, 2]', "line 2: not a history entry")])
def test_a_broken_history_is_a_usage_error_before_anything_runs(suite, line, message):
    suite.runpytest_subprocess()
    history = suite.path / "reports" / "history.jsonl"
    history.write_text(history.read_text() + line + "\n")
    (suite.path / "reports" / "results.json").unlink()
    res = suite.runpytest_subprocess()
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str() and "--certkit-history none" in res.stderr.str()
    assert not (suite.path / "reports" / "results.json").exists()


def test_a_regenerated_report_keeps_the_baseline_and_the_trend(suite, monkeypatch, tmp_path, capsys):
    """`certkit report results.json --baseline B --history H` writes the sections the run's own report had."""
    suite.runpytest_subprocess("--certkit-baseline", "base.json", "--certkit-update-baseline")
    monkeypatch.setenv("BRIGHT_SHIFT", "0.1")
    suite.runpytest_subprocess("--certkit-baseline", "base.json", "--certkit-min-pass-rate", "0")
    run_html = (suite.path / "reports" / "audit.html").read_text()
    out = tmp_path / "again.html"
    results, history = suite.path / "reports" / "results.json", suite.path / "reports" / "history.jsonl"
    assert main(["report", str(results), "-o", str(out), "--baseline", str(suite.path / "base.json"), "--history", str(history)]) == 0
    again = out.read_text()
    for section in ("Compared with the baseline", "REGRESSED: was certified", 'id="trend"'):
        assert section in run_html and section in again, section
    plain = tmp_path / "plain.html"
    assert main(["report", str(results), "-o", str(plain)]) == 0
    assert "Compared with the baseline" not in plain.read_text()
    with pytest.raises(SystemExit):
        main(["report", str(results), "-o", str(plain), "--baseline", str(tmp_path / "missing.json")])
    assert "baseline file" in capsys.readouterr().err
