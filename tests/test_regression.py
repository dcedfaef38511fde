"""Baselines, history, diff and merge: the regression tracking a release pipeline gates on."""

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from certkit.cli import main
from certkit.regression import compare, counts_line, drop_p_value, fingerprint_line, holm
from certkit.results import ResultsError


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
    assert f"REMOVED {removed['nodeid']} (was {removed['status']})" in out
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


def test_counts_are_compared_only_for_the_same_event():
    """p_A is the probability of one outcome under one noise on one case: a raised sigma lowers it with no change in the
    model, so the counts of a requirement whose outcome, noise or case changed are not compared; its status still is."""
    base = {**_cert(k=1990, n=2000), "case_hash": "ab" * 32}
    louder = {**_cert(k=1800, n=2000), "case_hash": "ab" * 32, "image_kernel": {"sigma": 0.75}}
    result = compare(_doc(base), _doc(louder))
    assert result["regressions"] == [] and result["within_noise"] == [] and result["tests"] == 0
    (changed,) = result["changed"]
    assert changed["reasons"] == ["changed: sigma 0.5 -> sigma 0.75; counts not compared"]
    assert result["changes"]["t.py::test[0]"] == "changed: sigma 0.5 -> sigma 0.75"
    from certkit.report import render_report
    from certkit.results import build

    shown = {**louder, "case_id": "c", "outcome": "bright", "p_a_upper": 0.91, "p_star": 0.6, "p_adv": 0.7, "radius": 0.1}
    html = render_report(build(_doc(shown)["results"], run={}, cases={}), baseline=result)
    assert counts_line(result) in html  # the report's counts are the terminal's and certkit diff's
    assert "Changed requirements" in html and "changed: sigma 0.5 -&gt; sigma 0.75; counts not compared" in html
    assert compare(_doc(base), _doc({**louder, "image_kernel": {"sigma": 0.5}}))["regressions"]  # the same drop, same noise: flagged
    lost = compare(_doc(base), _doc({**louder, "status": "not certified"}))
    assert lost["regressions"][0]["reasons"] == ["was certified, now not certified (sigma 0.5 -> sigma 0.75)"]
    texts = {"outcome": {**base, "outcome": "refused"}, "text noise": {**base, "text_kernel": {"kind": "mask", "beta": 0.2}},
             "case": {**base, "case_hash": "ff" * 32}}
    why = {name: compare(_doc(base), _doc(cert))["changed"][0]["reasons"][0] for name, cert in texts.items()}
    assert why["outcome"] == "changed: outcome None -> outcome refused; counts not compared"
    assert why["text noise"] == "changed: beta 0 (no text noise) -> beta 0.2, mask kernel; counts not compared"
    assert why["case"].startswith("changed: the case's content changed")
    assert compare(_doc(base), _doc({**base, "case_hash": ""}))["changed"] == []  # a record without it: compared
    tighter = compare(_doc(base), _doc({**_cert(k=1990, n=2000), "threshold": 0.9, "edits": 1}))  # same event, stricter requirement
    assert tighter["changed"] == [] and tighter["tests"] == 1


def test_diff_lists_changed_requirements(tmp_path, capsys):
    (tmp_path / "old.json").write_text(json.dumps(_doc(_cert(k=1990, n=2000))))
    (tmp_path / "new.json").write_text(json.dumps(_doc({**_cert(k=1800, n=2000), "image_kernel": {"sigma": 0.75}})))
    assert main(["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    out = capsys.readouterr().out
    assert "0 regressions" in out and "1 changed (counts not compared)" in out
    assert "CHANGED t.py::test[0]: sigma 0.5 -> sigma 0.75; counts not compared" in out


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


# ---------------------------------------------------------------- what was compared: fingerprints, counts and names


def test_the_comparison_states_both_fingerprints_and_whether_the_model_changed():
    base, cur = _doc(_cert(k=199)), _doc(_cert(k=199))
    base["run"]["models"], cur["run"]["models"] = ["a" * 64], ["b" * 64]
    base["run"]["oracles"] = cur["run"]["oracles"] = ["label@1:4bba3f163949007d"]
    result = compare(base, cur)
    assert result["fingerprints"] == {"baseline": {"models": ["a" * 64], "oracles": ["label@1:4bba3f163949007d"]},
                                      "current": {"models": ["b" * 64], "oracles": ["label@1:4bba3f163949007d"]}}
    assert result["model_changed"] is True and result["oracle_changed"] is False
    assert fingerprint_line(result) == "model changed: aaaaaaaaaaaa -> bbbbbbbbbbbb; same oracle label@1:4bba3f163949007d"
    same = compare(base, base)
    assert not same["model_changed"] and fingerprint_line(same).startswith("same model aaaaaaaaaaaa and oracle ")
    # a document without run fingerprints: those of its certificates; none at all is said, never taken for "unchanged"
    old = _doc({**_cert(k=199), "model_fingerprint": "c" * 64, "oracle_fingerprint": "o"})
    old["run"] = {"settings": {"alpha": 0.01}}
    assert compare(old, cur)["fingerprints"]["baseline"] == {"models": ["c" * 64], "oracles": ["o"]}
    bare = _doc(_cert(k=199))
    assert "model: baseline none recorded, this run bbbbbbbbbbbb (cannot tell whether it changed)" in fingerprint_line(compare(bare, cur))
    assert counts_line(result) == ("0 regressions, 0 improvements, 0 within sampling noise, 0 changed (counts not compared), "
                                   "0 new, 0 removed")


def test_terminal_and_diff_say_model_changed_and_name_what_changed_with_the_same_counts(suite, capsys):
    """A baseline whose model fingerprint differs (as after a release), with one requirement not certified there and one
    under another sigma: the run's terminal and certkit diff both say "model changed", name the improvement and the
    changed requirement, and print one counts line."""
    assert suite.runpytest_subprocess("--certkit-baseline", "base.json", "--certkit-update-baseline").ret == 0
    base = json.loads((suite.path / "base.json").read_text())
    base["run"]["models"] = ["0" * 64]
    (worse, other) = base["results"][0], base["results"][1]
    worse["status"] = worse["certificates"][0]["status"] = "not certified"
    other["certificates"][0]["image_kernel"] = {**other["certificates"][0]["image_kernel"], "sigma": 0.5}
    (suite.path / "base.json").write_text(json.dumps(base))
    res = suite.runpytest_subprocess("--certkit-baseline", "base.json")
    out = res.stdout.str()
    line = next(x for x in res.stdout.lines if x.startswith("baseline base.json: "))
    assert "; model changed: 000000000000 -> " in line, line
    res.stdout.fnmatch_lines([f"  IMPROVED {worse['nodeid']}: now certified (was not certified)".replace("[", "[[]"),
                              f"  CHANGED {other['nodeid']}: sigma 0.5 -> sigma 0.25; counts not compared".replace("[", "[[]")])
    capsys.readouterr()  # what the pytest runs printed
    assert main(["diff", str(suite.path / "base.json"), str(suite.path / "reports" / "results.json")]) == 0
    diff = capsys.readouterr().out
    assert "  model changed: 000000000000 -> " in diff
    assert line.split(": ", 1)[1].split(";")[0] == diff.splitlines()[0].split(": ", 1)[1], (line, diff)
    assert f"IMPROVED {worse['nodeid']}" in diff and f"CHANGED {other['nodeid']}" in diff and "REGRESSED" not in out


PACKAGE = Path(__file__).resolve().parents[1] / "certkit"


def certkit_modules(package: Path = PACKAGE) -> list[str]:
    """Every module of the package, by dotted name (a package by its own name)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def certkit_imports(name: str, package: Path = PACKAGE) -> set:
    """The certkit modules that module ``name`` imports, at its top or in a function (not under ``if TYPE_CHECKING``,
    which never runs); ``from .x import y`` counts as ``certkit.x.y`` where that is a module, else ``certkit.x``."""
    path = package.joinpath(*name.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()

    def visit(node) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                child = ast.Module(body=child.orelse, type_ignores=[])
            elif isinstance(child, ast.ImportFrom) and child.level:
                module = ".".join(base[:len(base) - child.level + 1] + ([child.module] if child.module else []))
                for alias in child.names:
                    full = f"{module}.{alias.name}"
                    found = package.joinpath(*full.split(".")[1:])
                    out.add(full if found.is_dir() or found.with_suffix(".py").is_file() else module)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                out.update(a.name if isinstance(child, ast.Import) else child.module for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m and m.startswith("certkit") and m != name}


def import_circle(package: Path = PACKAGE) -> list[str] | None:
    """One import circle among the package's modules (``[a, b, ..., a]``), or None where there is none."""
    graph = {name: certkit_imports(name, package) for name in certkit_modules(package)}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other in graph and other not in state and (found := walk(other)):
                return found
        path.pop()
        state[name] = 2
        return None

    return next((found for name in graph if name not in state and (found := walk(name))), None)


def test_the_results_document_does_not_call_the_comparer():
    """Issue 31: results.py imported regression.compare while regression.py imports results. No module that
    certkit.results imports, at its top or in a function, is certkit.regression."""
    seen, todo = set(), ["certkit.results"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += certkit_imports(name)
    assert "certkit.regression" not in seen, sorted(seen)


def test_no_import_circle():
    """Issue 31: no certkit module reaches itself through imports, at module top or in functions (a module that owns a
    concept does not import its consumer): cases/datasets_io, calibration/oracles and demo/demo.train were circles."""
    circle = import_circle()
    assert circle is None, "import circle: " + " -> ".join(circle)
