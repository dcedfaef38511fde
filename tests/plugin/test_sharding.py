"""Shards (certkit/plugin/sharding.py): parsing the shard, the split by case, its balance and its independence of
order; shards run through pytest and merged by certkit merge into the one run. (The merge's refusals are in
tests/test_results.py.)"""

import json
import random
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from certkit.cli import main
from certkit.plugin.sharding import Shard, assign, group_of, parse_shard, split
from tests.plugin.project import SUITE, _certificates, _run


@pytest.mark.parametrize("text, env, want", [
    ("2/4", {}, Shard(2, 4)),
    (" 1 / 1 ", {}, Shard(1, 1)),
    ("auto", {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "5"}, Shard(3, 5)),
    ("auto/3", {"JOB_COMPLETION_INDEX": "0"}, Shard(1, 3)),
    ("auto/3", {"CI_NODE_INDEX": "3"}, Shard(3, 3)),
    ("none", {}, None),
])
def test_a_shard_is_read_from_the_option_or_the_ci_variables(text, env, want):
    assert parse_shard(text, env) == want


@pytest.mark.parametrize("text, env, message", [
    ("0/3", {}, "shard 0 of 3 does not exist"),
    ("4/3", {}, "shard 4 of 3 does not exist"),
    ("2", {}, "not a shard"),
    ("auto", {"CI_NODE_INDEX": "1"}, "auto needs CI_NODE_INDEX and CI_NODE_TOTAL"),
    ("auto/4", {}, "auto/N needs JOB_COMPLETION_INDEX"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "4"}, "shard 5 of 4 does not exist"),
    ("auto", {"CI_NODE_INDEX": "x", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX='x' is not a whole number"),
])
def test_a_bad_shard_is_a_usage_error_that_names_it(text, env, message):
    with pytest.raises(pytest.UsageError, match="--certkit-shard") as exc:
        parse_shard(text, env)
    assert message in str(exc.value) and "K/N" in str(exc.value)


def test_assignment_ignores_the_order_groups_come_in_and_balances_a_large_suite():
    rng = random.Random(0)
    # 5,000 requirements on 1,700 cases: 1 to 5 requirements a case, each planned at 20 to 2,000 samples
    costs = {f"case:{i}": max(rng.randint(20, 2000) for _ in range(rng.randint(1, 5))) + 3 for i in range(1700)}
    keys = list(costs)
    rng.shuffle(keys)
    for total in (2, 3, 8, 16):
        a, b = assign(costs, total), assign({k: costs[k] for k in keys}, total)
        assert a == b
        loads = [sum(c for g, c in costs.items() if a[g] == k) for k in range(1, total + 1)]
        assert max(loads) <= 1.10 * sum(loads) / total, loads


def test_shards_cover_the_suite_once_keep_cases_together_and_do_not_depend_on_order(pytester):
    items = pytester.getitems(SUITE)
    assert len(items) == 12 * 3 + 5 + 1
    seen = {}
    for k in (1, 2, 3):
        kept, deselected, record = split(list(items), Shard(k, 3))
        shuffled = list(items)
        random.Random(k).shuffle(shuffled)
        assert {i.nodeid for i in split(shuffled, Shard(k, 3))[0]} == {i.nodeid for i in kept}
        assert len(kept) + len(deselected) == len(items) and record["assigned"] == sorted(i.nodeid for i in kept)
        for item in kept:
            assert item.nodeid not in seen
            seen[item.nodeid] = k
        assert record["total"] == 3 and record["suite_tests"] == len(items)
    assert set(seen) == {i.nodeid for i in items}
    by_case = {}
    for item in items:
        by_case.setdefault(group_of(item), set()).add(seen[item.nodeid])
    assert all(len(shards) == 1 for shards in by_case.values())
    assert group_of(items[0]).startswith("case:c") and group_of(items[-1]) == "test:" + items[-1].nodeid


# ------------------------------------------------------------------ shards through pytest, and their merge


ROOT = Path(__file__).resolve().parents[2]


def test_three_shards_merge_into_the_certificates_and_gate_of_one_run(sharded, tmp_path, capsys):
    whole = _run(sharded, "--certkit-json", "whole.json")
    shards = [_run(sharded, "--certkit-shard", f"{k}/3", "--certkit-json", f"s{k}.json", *(["-n", "2"] if k == 2 else []))
              for k in (1, 2, 3)]
    docs = [json.loads((sharded.path / f"s{k}.json").read_text()) for k in (1, 2, 3)]
    assert all(d["run"]["shard"]["suite"] == docs[0]["run"]["shard"]["suite"] for d in docs)  # -n 2 on shard 2 changes nothing
    shards[0].stdout.fnmatch_lines(["*shard 1/3: * requirement(s) of 42 collected test(s) ran here*certkit merge*"])
    assert sum(len(d["results"]) for d in docs) == 41  # every requirement once (test_plain is no requirement)
    out = tmp_path / "merged.json"
    code = main(["merge", *(str(sharded.path / f"s{k}.json") for k in (3, 1, 2)), "-o", str(out), "--report", str(tmp_path / "m.html")])
    merged, one = json.loads(out.read_text()), json.loads((sharded.path / "whole.json").read_text())
    assert _certificates(merged) == _certificates(one)
    for key in ("requirements", "certified", "not certified", "inconclusive", "error", "gate", "gate_reason"):
        assert merged["summary"][key] == one["summary"][key], key
    assert code == (0 if one["summary"]["gate"] == "passed" else 1) == (0 if whole.ret == 0 else 1)
    assert "merged 3 shards" in capsys.readouterr().out and (tmp_path / "m.html").is_file()
    assert "shard" not in merged["run"] and merged["run"]["merged_shards"] == 3


def test_a_shard_that_skipped_part_of_its_share_leaves_the_merge_incomplete(sharded, tmp_path, capsys):
    _run(sharded, "--certkit-shard", "1/2", "--certkit-json", "s1.json")
    _run(sharded, "--certkit-shard", "2/2", "--certkit-json", "s2.json", "-k", "not frontier")
    s2 = json.loads((sharded.path / "s2.json").read_text())
    if not any("frontier" in n for n in s2["run"]["shard"]["requirements"]):
        pytest.skip("this split put every frontier requirement in shard 1")
    code = main(["merge", str(sharded.path / "s1.json"), str(sharded.path / "s2.json"), "-o", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert code == 1 and "gate: INCOMPLETE" in out and "did not evaluate" in out


def test_a_sharded_run_against_a_baseline_does_not_count_the_other_shards_as_removed(sharded):
    _run(sharded, "--certkit-json", "base.json")
    res = _run(sharded, "--certkit-shard", "1/3", "--certkit-baseline", "base.json", "--certkit-json", "s1.json")
    doc = json.loads((sharded.path / "s1.json").read_text())
    assert doc["baseline"]["removed"] == [] and "REMOVED" not in res.stdout.str()
    assert "0 removed" in res.stdout.str()


def test_a_shard_whose_share_is_empty_still_writes_its_results_for_the_merge(sharded):
    """More shards than cases: shard 20/20 gets nothing, yet writes a results file (no requirement, its share recorded),
    so the merge of all N files is not refused for a missing shard."""
    _run(sharded, "--certkit-shard", "20/20", "--certkit-json", "s20.json")
    doc = json.loads((sharded.path / "s20.json").read_text())
    assert doc["results"] == [] and doc["run"]["shard"]["index"] == 20 and doc["run"]["shard"]["requirements"] == []
    assert doc["summary"]["requirements"] == 0


def test_a_shard_exits_on_its_errors_not_the_pass_rate_and_the_merge_records_every_shard(sharded, tmp_path, capsys):
    """Issue 28: a shard of a release whose pass rate fails exits 0 (its share had no error) and says the pass-rate gate
    is the merge's; the merge fails it. The merged run records each shard's command and times, and the merge's own; a
    shard stopped in its collection (its K/N known, its share not) leaves the merge INCOMPLETE, not refused."""
    shards = [_run(sharded, "--certkit-shard", f"{k}/2", "--certkit-json", f"s{k}.json", "--certkit-min-pass-rate", "0.99")
              for k in (1, 2)]
    docs = [json.loads((sharded.path / f"s{k}.json").read_text()) for k in (1, 2)]
    for k, (res, doc) in enumerate(zip(shards, docs), 1):
        assert res.ret == pytest.ExitCode.OK, res.stdout.str()
        n = doc["summary"]["requirements"]
        res.stdout.fnmatch_lines([f"gate: PASSED: shard {k}/2: {n} requirements, 0 errors; the pass-rate gate is decided by "
                                  "`certkit merge` of the 2 shards"])
    assert sum(d["summary"]["certified"] for d in docs) < 0.99 * sum(d["summary"]["requirements"] for d in docs)
    out = tmp_path / "merged.json"
    paths = [str(sharded.path / f"s{k}.json") for k in (1, 2)]
    assert main(["merge", *paths, "-o", str(out)]) == 1
    assert "gate: FAILED: pass rate " in capsys.readouterr().out
    run = json.loads(out.read_text())["run"]
    assert run["args"] == ["certkit", "merge", *paths, "-o", str(out)]
    assert [s["file"] for s in run["shards"]] == paths and [s["shard"] for s in run["shards"]] == ["1/2", "2/2"]
    for shard, doc in zip(run["shards"], docs):
        assert {k: shard[k] for k in ("args", "started", "finished", "duration_s", "run_id")} == \
            {k: doc["run"][k] for k in ("args", "started", "finished", "duration_s", "run_id")}
        assert "--certkit-shard" in shard["args"] and shard["gate"] == "passed"
    # the merge's own times: it started after every shard had finished, and its duration is its own start to finish
    # (timestamps to the second), not a shard's (no speed is asserted: a loaded machine may merge slower than a shard ran)
    assert run["started"] >= max(d["run"]["finished"] for d in docs) and run["finished"] >= run["started"]
    span = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
    assert 0 <= run["duration_s"] <= span + 1
    stopped = json.loads(json.dumps(docs[1]))
    stopped["run"]["shard"] = {"index": 2, "total": 2}
    stopped["results"], stopped["summary"]["incomplete"] = [], ["interrupted (Ctrl-C) during the collection, before any requirement ran"]
    (tmp_path / "s2.json").write_text(json.dumps(stopped))
    assert main(["merge", paths[0], str(tmp_path / "s2.json"), "-o", str(out)]) == 1
    said = capsys.readouterr().out
    assert "gate: INCOMPLETE" in said and "(shard 2/2) stopped before its collection finished" in said


BAD_MARKERS = """
import pytest


@pytest.mark.certkit(sigma=-1)
def test_negative_sigma(certkit):
    pass


@pytest.mark.certkit("positional")
def test_positional(certkit):
    pass
"""


def test_a_bad_marker_in_a_sharded_run_fails_its_requirement_not_the_collection(pytester):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_bad=BAD_MARKERS)
    seen = []
    for k in (1, 2):
        res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--certkit-shard", f"{k}/2", "--certkit-report", "none",
                                           "--certkit-history", "none", "--certkit-json", f"s{k}.json")
        assert "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
        seen += [r["nodeid"] for r in json.loads((pytester.path / f"s{k}.json").read_text())["results"] if r["status"] == "error"]
    assert sorted(seen) == ["test_bad.py::test_negative_sigma", "test_bad.py::test_positional"]


def test_a_bad_shard_option_stops_the_run_with_a_usage_error(sharded):
    res = _run(sharded, "--certkit-shard", "4/3")
    assert res.ret == pytest.ExitCode.USAGE_ERROR and "shard 4 of 3 does not exist" in res.stderr.str()


def test_the_demo_audit_as_three_shards_merges_into_the_one_run(tmp_path):
    """The README's main job split three ways, each shard in its own pytest process: the merged certificates are the
    one run's, to the last count."""
    base = [sys.executable, "-m", "pytest", "audits", "-q", "-p", "no:cacheprovider", "--certkit-cache-dir", "none",
            "--certkit-report", "none", "--certkit-history", "none"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(base + ["--certkit-json", str(tmp_path / "one.json")], cwd=ROOT, env=env, capture_output=True, check=False)
    for k in (1, 2, 3):
        subprocess.run(base + ["--certkit-shard", f"{k}/3", "--certkit-json", str(tmp_path / f"s{k}.json")], cwd=ROOT, env=env,
                       capture_output=True, check=False)
    code = main(["merge", *(str(tmp_path / f"s{k}.json") for k in (1, 2, 3)), "-o", str(tmp_path / "merged.json")])
    one, merged = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "merged"))
    assert len(one["results"]) == 72 and _certificates(merged) == _certificates(one)
    assert merged["summary"]["gate_reason"] == one["summary"]["gate_reason"] and code == 0
