"""The results document (certkit/results.py): written atomically, read and checked (a baseline with a broken body, a
broken history), the history that grows run by run, and the merge of shards with its refusals."""

import json

import pytest

from certkit.cli import main
from certkit.regression import compare
from certkit.results import ResultsError, merge
from tests.plugin.project import _run


def test_concurrent_result_writes_use_their_own_temporary_files(tmp_path, monkeypatch):
    import os

    from certkit.results import write_results

    sources = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (sources.append(str(src)), real(src, dst)))
    write_results(tmp_path / "results.json", {"a": 1})
    write_results(tmp_path / "results.json", {"a": 2})
    assert len(set(sources)) == 2 and not any(s.endswith("results.json.tmp") for s in sources)
    assert not list(tmp_path.glob("*.tmp*"))


def test_history_grows_and_the_report_draws_the_trend(suite):
    for _ in range(2):
        suite.runpytest_subprocess()
    lines = (suite.path / "reports" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2
    entry = json.loads(lines[-1])
    assert entry["requirements"] == 3 and 0 <= entry["pass_rate"] <= 1 and entry["mean_radius"] > 0
    assert 'id="trend"' in (suite.path / "reports" / "audit.html").read_text()


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


# ---------------------------------------------------------------- merging shards


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


def test_merge_refuses_shards_that_disagree_overlap_or_leave_one_missing(sharded, tmp_path, capsys):
    for k in (1, 2):
        _run(sharded, "--certkit-shard", f"{k}/2", "--certkit-json", f"s{k}.json")
    s1, s2 = (json.loads((sharded.path / f"s{k}.json").read_text()) for k in (1, 2))

    def merge_of(*docs):
        paths = []
        for i, doc in enumerate(docs):
            path = tmp_path / f"m{i}.json"
            path.write_text(json.dumps(doc))
            paths.append(str(path))
        code = main(["merge", *paths, "-o", str(tmp_path / "out.json")])
        return code, capsys.readouterr()

    def changed(doc, **run):
        doc = json.loads(json.dumps(doc))
        for key, value in run.items():
            doc["run"][key] = value
        return doc

    code, out = merge_of(s1)
    assert code == 2 and "shard(s) 2/2 missing" in out.err
    code, out = merge_of(s1, s1)
    assert code == 2 and "are both shard 1/2" in out.err
    code, out = merge_of(s1, changed(s2, seed=7))
    assert code == 2 and "different seed" in out.err
    code, out = merge_of(s1, changed(s2, certkit_version="9.9"))
    assert code == 2 and "different certkit_version" in out.err
    code, out = merge_of(s1, changed(s2, models=["another"]))
    assert code == 2 and "different models" in out.err
    code, out = merge_of(s1, changed(s2, shard={**s2["run"]["shard"], "suite": "0" * 64}))
    assert code == 2 and "another collected suite" in out.err
    code, out = merge_of(s1, changed(s2, shard={**s2["run"]["shard"], "total": 3}))
    assert code == 2 and "another number of shards N" in out.err
    plain = changed(s2)
    del plain["run"]["shard"]
    code, out = merge_of(s1, plain)
    assert code == 2 and "not run with --certkit-shard" in out.err
    stray = json.loads(json.dumps(s2))
    stray["results"].append(s1["results"][0])
    code, out = merge_of(s1, stray)
    assert code == 2 and "not assigned" in out.err
