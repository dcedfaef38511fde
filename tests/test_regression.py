"""Baselines, history, diff and merge: the regression tracking a release pipeline gates on."""

import json
import math

import numpy as np
import pytest

from certkit.cli import main
from certkit.regression import compare, drop_p_value, holm
from certkit.results import ResultsError, merge
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
    worse.stdout.fnmatch_lines(["*baseline base.json: * regressions*",
                                "*REGRESSED test_suite.py::test_bright[[]c2[]]: was certified, now *"])
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


def test_diff_prints_the_rule_the_verdicts_and_the_removed_and_exits_1_on_a_regression(suite, tmp_path, capsys):
    suite.runpytest_subprocess("--certkit-json", "a.json")
    a = json.loads((suite.path / "a.json").read_text())
    assert main(["diff", str(suite.path / "a.json"), str(suite.path / "a.json")]) == 0
    assert "0 regressions" in capsys.readouterr().out
    b = json.loads(json.dumps(a))
    cert = b["results"][0]["certificates"][0]
    cert["successes"], cert["n"] = 300, 1000  # a success rate of 0.3 where the baseline's was 1: a real drop
    removed = b["results"].pop()
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert main(["diff", str(suite.path / "a.json"), str(tmp_path / "b.json")]) == 1
    out = capsys.readouterr().out
    assert "rule: A requirement regresses when" in out and "Holm-corrected over the 2 compared requirements at alpha = 0.01" in out
    assert f"REGRESSED {b['results'][0]['nodeid']}: p_A fell: " in out and "anytime-valid p = " in out
    assert f"removed   {removed['nodeid']} (was {removed['status']} in " in out
    for option in ("--p-tolerance", "--radius-tolerance"):  # the fixed tolerances are gone: refused, never ignored
        with pytest.raises(SystemExit):
            main(["diff", option, "0.005", str(suite.path / "a.json"), str(tmp_path / "b.json")])
        assert f"unrecognized arguments: {option}" in capsys.readouterr().err
    only_removed = json.loads(json.dumps(a))
    only_removed["results"].pop()
    (tmp_path / "c.json").write_text(json.dumps(only_removed))
    assert main(["diff", str(suite.path / "a.json"), str(tmp_path / "c.json")]) == 1  # a vanished requirement fails, as in a run
    assert "pass --allow-removed" in capsys.readouterr().out
    assert main(["diff", "--allow-removed", str(suite.path / "a.json"), str(tmp_path / "c.json")]) == 0
    assert main(["diff", "--alpha", "0.2", str(suite.path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "at alpha = 0.2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["diff", str(tmp_path / "missing.json"), str(tmp_path / "b.json")])


def _cert(status="certified", k=200, n=200, mode="frontier", alpha=0.01, lower=None):
    from certkit.stats import clopper_pearson

    lower = clopper_pearson(k, n, alpha)[0] if lower is None else lower
    return {"status": status, "successes": k, "n": n, "mode": mode, "alpha": alpha, "p_a_lower": lower, "threshold": 0.5, "edits": 0,
            "image_kernel": {"sigma": 0.5}, "text_kernel": None, "frontier": []}


def _doc(*certs, alpha=0.01, names=None):
    names = names or [f"t.py::test[{i}]" for i in range(len(certs))]
    return {"schema": "certkit.results/1", "run": {"settings": {"alpha": alpha}}, "summary": {},
            "results": [{"nodeid": name, "status": c["status"], "certificates": [c]} for name, c in zip(names, certs)]}


def test_the_issue_example_is_sampling_noise_not_a_regression():
    """Issue 21: 199/200 -> 196/200 in report mode (lower bound 0.9673 -> 0.9431) failed the gate under the fixed
    0.02 tolerance; Fisher's exact test gives it p = 0.19."""
    base, cur = _doc(_cert(k=199)), _doc(_cert(k=196))
    assert base["results"][0]["certificates"][0]["p_a_lower"] - cur["results"][0]["certificates"][0]["p_a_lower"] > 0.02
    result = compare(base, cur)
    assert result["regressions"] == [] and 0.1 < result["p_values"]["t.py::test[0]"] < 0.3
    assert result["within_noise"][0]["reasons"][0].startswith("within sampling noise: 199/200 -> 196/200 successes (Fisher exact p = ")
    assert "lower bound 0.9673 -> 0.9431" in result["changes"]["t.py::test[0]"]


def test_the_same_model_under_other_seeds_is_no_regression():
    """The bench's realistic mix (certify near and far from p*, frontiers at n = 200) at seeds 1-3 against seed 0:
    no regression, where the old fixed tolerances flag at least one of the three runs (deterministic seeds)."""
    from bench.bench_regression import audit, old_rule

    base = audit(0)
    runs = [audit(seed) for seed in (1, 2, 3)]
    assert any(old_rule(base, run) for run in runs)
    for run in runs:
        result = compare(base, run)
        assert result["regressions"] == [], result["regressions"]
        assert result["tests"] == len(base["results"]) and result["alpha"] == 0.01 and result["alpha_source"] == "the run's alpha"
    same = compare(base, base)  # same seed, same model: identical counts
    assert same["regressions"] == [] and set(same["p_values"].values()) == {1.0}


def test_a_drop_of_005_at_n_2000_is_flagged_with_its_p_value():
    from bench.bench_regression import audit

    mix = [("frontier", "f", "frontier", 2000), ("far", "a", "certify", 0.9), ("near", "c", "certify", 0.7)]
    base, cur = audit(0, mix=mix), audit(1, {"f": 0.92}, mix=mix)  # p_A 0.97 -> 0.92 on case f
    result = compare(base, cur)
    (reg,) = result["regressions"]
    assert reg["nodeid"] == "test_mix.py::test[frontier]" and reg["p_value"] <= reg["adjusted_p_value"] <= 0.01
    assert reg["reasons"][0].startswith("p_A fell: ") and "Fisher exact p = " in reg["reasons"][0] and "max radius" in reg["reasons"][0]


def test_status_changes():
    """Certified -> not certified or error regresses whatever the counts; certified -> inconclusive only when the
    counts show the drop; not certified -> certified is an improvement."""
    certify = lambda status, k, n: _cert(status, k, n, mode="certify", lower=0.6)  # noqa: E731
    result = compare(_doc(certify("certified", 50, 50)), _doc(certify("not certified", 45, 50)))
    assert result["regressions"][0]["reasons"] == ["was certified, now not certified"] and "p_value" not in result["regressions"][0]
    error = _doc(certify("certified", 50, 50))
    error["results"][0] = {"nodeid": "t.py::test[0]", "status": "error", "certificates": []}
    assert compare(_doc(certify("certified", 50, 50)), error)["regressions"][0]["reasons"] == ["was certified, now error"]
    noise = compare(_doc(certify("certified", 2147, 2933)), _doc(certify("inconclusive", 7100, 10000)))
    assert noise["regressions"] == [] and noise["within_noise"][0]["reasons"][0] == "was certified, now inconclusive"
    shown = compare(_doc(certify("certified", 9990, 10000)), _doc(certify("inconclusive", 9000, 10000)))
    assert shown["regressions"][0]["reasons"][0] == "was certified, now inconclusive" and shown["regressions"][0]["p_value"] < 1e-10
    better = compare(_doc(certify("inconclusive", 90, 100)), _doc(certify("certified", 99, 100)))
    assert better["improvements"][0]["reasons"] == ["now certified (was inconclusive)"] and better["regressions"] == []


def test_holm_controls_the_family_not_each_requirement():
    """970/1000 -> 950/1000 (Fisher p = 0.015) alone regresses at alpha 0.05; among ten compared requirements its
    Holm-adjusted p-value is 0.15 and it does not. The level is the run's alpha unless one is given."""
    drop = (_cert(k=970, n=1000), _cert(k=950, n=1000))
    alone = compare(_doc(drop[0], alpha=0.05), _doc(drop[1], alpha=0.05))
    assert len(alone["regressions"]) == 1 and alone["alpha"] == 0.05 and alone["tests"] == 1
    steady = [_cert(k=990, n=1000)] * 9
    family = compare(_doc(drop[0], *steady, alpha=0.05), _doc(drop[1], *steady, alpha=0.05))
    assert family["regressions"] == [] and family["tests"] == 10
    assert "Holm-adjusted 0.15 > alpha 0.05" in family["within_noise"][0]["reasons"][0]
    assert "over the 10 compared requirements at alpha = 0.05 (the run's alpha)" in family["rule"]
    assert compare(_doc(drop[0], alpha=0.05), _doc(drop[1], alpha=0.05), alpha=0.01)["regressions"] == []
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005], 0.05)
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02]) and rejected.tolist() == [True, False, False, True]
    no_settings = _doc(drop[1])
    no_settings["run"] = {}
    assert compare(_doc(drop[0]), no_settings)["alpha_source"] == "the certificates' smallest alpha"
    with pytest.raises(ResultsError, match="alpha of the current results must lie strictly between 0 and 1"):
        compare(_doc(drop[0]), _doc(drop[1], alpha=2.0))


def test_counts_where_a_sequential_test_stopped_get_the_anytime_valid_test():
    """Fixed-n tests are not valid on stopped counts (bench_regression --stopped); the same counts that Fisher's test
    flags in report mode (p = 4e-5) are within noise in certify mode (p = 0.02)."""
    base, cur = (2147, 2933), (6941, 10000)
    frontier = compare(_doc(_cert(k=base[0], n=base[1])), _doc(_cert(k=cur[0], n=cur[1])))
    certify = compare(_doc(_cert(k=base[0], n=base[1], mode="certify")), _doc(_cert(k=cur[0], n=cur[1], mode="certify")))
    assert frontier["regressions"] and frontier["p_values"]["t.py::test[0]"] < 1e-4
    assert not certify["regressions"] and 0.01 < certify["p_values"]["t.py::test[0]"] < 0.03


@pytest.mark.parametrize("counts", [(2147, 2933, 6898, 10000), (52, 52, 40, 52), (9990, 10000, 9960, 10000), (197, 323, 150, 290)])
def test_the_anytime_p_value_is_the_supremum_over_the_null(counts):
    """The numerical supremum over q is within -1e-6 and +0.1% (relative) of that over a grid of 20,500 nulls; p-values are 1 where
    the current proportion is not lower, and Fisher's p-value is scipy's."""
    from scipy.stats import fisher_exact

    from certkit.regression import _log_evidence

    k0, n0, k1, n1 = counts
    q = np.union1d(np.linspace(0.0, 1.0, 20_001)[1:-1], 1.0 - np.geomspace(1e-7, 1e-3, 500))
    on_grid = math.exp(min(0.0, -float(_log_evidence(k0, n0, k1, n1, q).min())))
    assert on_grid * (1 - 1e-6) <= drop_p_value(*counts) <= on_grid * (1 + 1e-3)  # the grid's supremum (to 1e-6) or above, close to it
    assert drop_p_value(k0, n0, k1, n1, True) == pytest.approx(fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="less").pvalue)
    assert drop_p_value(k1, n1, k0, n0) == 1.0 and drop_p_value(k0, n0, k0, n0) == 1.0


def test_removed_requirements_are_listed_in_the_report_with_their_baseline_status():
    from certkit.report import render_report
    from tests.test_report import _cert as report_cert
    from tests.test_report import _doc as report_doc

    gone = {"nodeid": "t.py::test_gone[c9]", "status": "not certified", "certificates": [report_cert("not certified")]}
    base, cur = report_doc([gone]), report_doc()
    base["results"][0]["certificates"][0]["successes"] = 99  # this run's 95/100 is within sampling noise of it
    result = compare(base, cur)
    assert result["removed"] == ["t.py::test_gone[c9]"]
    assert result["removed_records"] == [{"key": "t.py::test_gone[c9]", "nodeid": "t.py::test_gone[c9]", "status": "not certified"}]
    html = render_report(cur, baseline=result)
    assert "Removed requirements (in the baseline, not in this run)" in html
    assert ("t.py::test_gone[c9]</bdi></b>: was not certified in the baseline" in html
            or "t.py::test_gone[c9]</b>: was not certified" in html)
    assert "Holm-corrected over the 4 compared requirements at alpha = 0.01 (the run&#39;s alpha)" in html
    assert "within sampling noise: 99/100 -&gt; 95/100 successes (anytime-valid p = " in html


def test_compare_and_merge_units():
    def rec(status, p):
        return {"nodeid": "t::x", "status": status, "certificates": [{"status": status, "p_a_lower": p, "threshold": 0.5, "edits": 0,
                                                                      "image_kernel": {"sigma": 0.5}, "text_kernel": None,
                                                                      "mode": "certify", "successes": 9, "n": 10, "alpha": 0.01}]}

    def doc(*r):
        return {"schema": "certkit.results/1", "run": {"models": ["m"]}, "summary": {}, "results": list(r)}

    assert compare(doc(rec("certified", 0.99)), doc(rec("certified", 0.99)))["regressions"] == []
    with pytest.raises(ResultsError, match="appears in both"):
        merge([doc(rec("certified", 0.9)), doc(rec("certified", 0.9))], ["a", "b"])


BROKEN_BODIES = [
    ("record without nodeid", {"results": [{"certificates": []}]}, "must be an object with a string 'nodeid'"),
    ("certificates not a list", {"results": [{"nodeid": "t", "certificates": 3}]}, "'certificates' must be a list"),
    ("unknown status", {"results": [{"nodeid": "t", "certificates": [{"status": "great"}]}]}, "known 'status'"),
    ("p_a_lower a string",
     {"results": [{"nodeid": "t", "certificates": [{"status": "certified", "p_a_lower": "high", "threshold": 0.5, "n": 3}]}]},
     "'p_a_lower' must be a number"),
    ("kernel unreadable", {"results": [{"nodeid": "t", "certificates": [{"status": "certified", "p_a_lower": 0.9, "threshold": 0.5, "n": 3,
                                                                          "successes": 3, "image_kernel": {"sigma": "x"}}]}]},
     "kernels or bounds cannot be read"),
    ("counts missing",
     {"results": [{"nodeid": "t", "certificates": [{"status": "certified", "p_a_lower": 0.9, "threshold": 0.5, "n": 3}]}]},
     "'successes' must be a number, got None; the regression test needs each certificate's counts"),
    ("more successes than samples",
     {"results": [{"nodeid": "t", "certificates": [{"status": "certified", "p_a_lower": 0.9, "threshold": 0.5, "n": 3, "successes": 4}]}]},
     "0 <= successes <= n"),
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
