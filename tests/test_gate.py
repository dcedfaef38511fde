"""The gate and the exit status: every gate rule, written every way a test can carry it, with and without xdist and
JUnit XML. A gate that did not pass never exits 0, and the terminal, the JUnit XML and results.json say the same.

One scenario is a small suite: ``test_ok`` (certified) and ``test_trigger``, which trips one gate rule, written as a
plain test, under ``@pytest.mark.xfail``, evaluated and then skipped (catching any error), or as one parameter of
two. Without xdist each (rule, form) is its own run, in this process, with JUnit off and on. Under ``-n 2`` one run
per rule holds the four forms as four files: what xdist adds is the journey of each report from a worker to the
controller, which the run's per-file records and terminal lines check, and the gate is computed from those records by
the same code as without xdist.
"""

import json
import xml.etree.ElementTree as ET

import pytest
import torch  # noqa: F401 - the in-process runs drop the modules they import, and torch cannot be imported twice

import certkit.models  # noqa: F401 - imported once here, not again in every in-process run
import certkit.regression  # noqa: F401
import certkit.report  # noqa: F401
from tests.plugin.project import CONFTEST, QUICK

CASE = 'Case("{id}", "hi", np.full((3, 8, 8), {value}, dtype=np.float32))'
OK = CASE.format(id="ok", value=0.9) + ', radius=0.05, outcome="bright", beta=0.0, n_max=300'
CERTIFIED = CASE.format(id="t", value=0.9) + ', radius=0.05, outcome="bright", beta=0.0, n_max=300'
NOT_CERTIFIED = CASE.format(id="t", value=0.2) + ', radius=0.05, outcome="bright", beta=0.0, n_max=300'
INCONCLUSIVE = CASE.format(id="tie", value=0.5) + ', radius=0.0, outcome="bright", beta=0.0, n_max=64'
ERROR = CASE.format(id="t", value=0.9) + ', radius=0.05, outcome="brite", beta=0.0, n_max=300'
# the regression: the baseline run's model saw this case bright (certified), this run's sees it dark
REGRESSING = (CASE.format(id="t", value='float(os.environ.get("TRIGGER_VALUE", "0.2"))')
              + ', radius=0.05, outcome="bright", beta=0.0, n_max=300')

# rule -> (the trigger's arguments, the trigger's status, run options, the gate, the gate's sentence in the terminal,
# where n is the number of triggers). The control has no certkit option: its requirements alone make it a certkit run.
RULES = {
    "control": (CERTIFIED, "certified", (), "passed", "PASSED: all * evaluated requirement(s) certified"),
    "not certified": (NOT_CERTIFIED, "not certified", (), "failed", "FAILED: {n} requirement(s) not certified (each must be)"),
    "inconclusive": (INCONCLUSIVE, "inconclusive", (), "failed", "FAILED: {n} requirement(s) inconclusive (allow with *)"),
    "error": (ERROR, "error", (), "failed", "FAILED: {n} requirement(s) could not be evaluated"),
    "error, pass-rate gate": (ERROR, "error", ("--certkit-min-pass-rate", "0"), "failed",
                              "FAILED: {n} requirement(s) could not be evaluated"),
    "pass rate": (NOT_CERTIFIED, "not certified", ("--certkit-min-pass-rate", "0.9"), "failed",
                  "FAILED: pass rate *% against the required 90.0%"),
    "regression": (REGRESSING, "not certified", ("--certkit-min-pass-rate", "0", "--certkit-baseline", "base.json"), "failed",
                   "FAILED: {n} regression(s) against the baseline base.json"),
    "removed": (CERTIFIED, "certified", ("-k", "not gone", "--certkit-baseline", "base.json"), "failed",
                "FAILED: {n} requirement(s) of the baseline not in this run (removed, renamed or deselected; allow with *)"),
    "removed, allowed": (CERTIFIED, "certified", ("-k", "not gone", "--certkit-baseline", "base.json", "--certkit-allow-removed"),
                         "passed", "PASSED: *; {n} requirement(s) of the baseline not in this run (*allowed by --certkit-allow-removed)"),
    "incomplete": (CERTIFIED, "certified", ("--continue-on-collection-errors",), "incomplete",
                   "INCOMPLETE: the run did not finish (* collection error(s): *); the results of the requirements that finished are kept"),
}
BASELINE_RULES = ("regression", "removed", "removed, allowed")

FORMS = {
    "plain": "def test_trigger(certkit):\n    certkit.assert_certified({trigger})\n",
    "xfail": '@pytest.mark.xfail(reason="known flaky")\ndef test_trigger(certkit):\n    certkit.assert_certified({trigger})\n',
    "skip": ("def test_trigger(certkit):\n    try:\n        certkit.certify({trigger})\n    except Exception:\n        pass\n"
             '    pytest.skip("evaluated, then skipped")\n'),
    "parametrized": ('@pytest.mark.parametrize("which", ["ok", "trigger"])\ndef test_trigger(certkit, which):\n'
                     "    if which == 'ok':\n        certkit.assert_certified({ok})\n"
                     "    else:\n        certkit.assert_certified({trigger})\n"),
}
TRIGGER_ID = {"parametrized": "test_trigger[trigger]"}

HEAD = ("import os\nimport numpy as np\nimport pytest\nfrom certkit import Case\n\n\n"
        "def test_ok(certkit):\n    certkit.assert_certified({ok})\n\n\n")
NO_FILES = ("--certkit-report", "none", "--certkit-history", "none")
GONE = "\n\ndef test_gone(certkit):\n    certkit.assert_certified({ok})\n"


def scenario(rule: str, form: str) -> str:
    text = HEAD + FORMS[form] + (GONE if rule.startswith("removed") else "")
    return text.replace("{ok}", OK).replace("{trigger}", RULES[rule][0])


def prepare(pytester, monkeypatch, rule: str, files: dict, run) -> None:
    """The project, and for the baseline rules the baseline: written by a run that still has every requirement (and
    sees the regressing case bright)."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**files)
    if rule == "incomplete":
        pytester.makepyfile(test_broken="raise RuntimeError('a test module that does not import')\n")
    if rule in BASELINE_RULES:
        monkeypatch.setenv("TRIGGER_VALUE", "0.9")
        assert run("--certkit-baseline", "base.json", "--certkit-update-baseline", *NO_FILES).ret == 0
        monkeypatch.setenv("TRIGGER_VALUE", "0.2")


def check_gate(pytester, res, rule: str, junit: bool, n: int = 1) -> dict:
    """Exit status, terminal gate line, results.json and (with JUnit) the gate's test case and suite properties agree."""
    _, _, _, gate, sentence = RULES[rule]
    out = res.stdout.str()
    assert (res.ret == pytest.ExitCode.OK) == (gate == "passed"), out
    if gate != "passed":
        assert res.ret == pytest.ExitCode.TESTS_FAILED, out
    res.stdout.fnmatch_lines(["gate: " + sentence.format(n=n)])
    # the settings line, once: in the header, after the collection, or (the control under xdist) in the certkit section
    assert out.count("certkit: seed 0, sigma 0.25, ") == 1, out
    if rule.startswith("removed"):
        res.stdout.fnmatch_lines(["baseline base.json: 0 regressions, 0 improvements, 0 within sampling noise, 0 changed (counts not "
                                  "compared), 0 new, {n} removed".format(n=n),
                                  "  REMOVED test_*.py::test_gone (was certified)" + (" (allowed)" if rule.endswith("allowed") else "")])
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["gate"] == gate
    if junit:
        suite = ET.parse(pytester.path / "j.xml").getroot().find("testsuite")
        properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
        assert properties["certkit_gate"] == gate and properties["certkit_gate_reason"] == doc["summary"]["gate_reason"]
        cases = [t for t in suite.iter("testcase") if t.get("classname") == "certkit" and t.get("name") == "gate"]
        assert len(cases) == (gate != "passed")
        if cases:
            assert cases[0].find("failure").get("message").startswith(f"certkit gate {gate.upper()}: ")
    return doc


def check_trigger(res, doc: dict, rule: str, nodeid: str) -> None:
    """The trigger's record has its rule's status; an error is a failed test with its message, never XFAIL or a skip."""
    status = {r["nodeid"]: r["status"] for r in doc["results"]}
    assert status[nodeid] == RULES[rule][1], status
    if rule.startswith("error"):
        pattern = nodeid.replace("[", "[[]")  # fnmatch reads [...] as a set of characters
        res.stdout.fnmatch_lines([f"ERROR: certkit could not evaluate {pattern}: unknown outcome label 'brite'*",
                                  f"FAILED {pattern} - ERROR*"])
        assert f"XFAIL {nodeid}" not in res.stdout.str() and "SKIPPED" not in res.stdout.str()


def runner(pytester, rule: str):
    """Runs of this scenario in this process; the control writes its report and history (it has no certkit option)."""
    def run(*args):
        return pytester.runpytest_inprocess(*QUICK, *(() if rule == "control" else NO_FILES), *args)

    return run


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("rule", RULES)
def test_gate_and_exit_status(pytester, monkeypatch, rule, form):
    run = runner(pytester, rule)
    prepare(pytester, monkeypatch, rule, {"test_scenario": scenario(rule, form)}, run)
    for junit in (False, True):
        res = run(*RULES[rule][2], *(("--junitxml", "j.xml") if junit else ()))
        doc = check_gate(pytester, res, rule, junit)
        check_trigger(res, doc, rule, "test_scenario.py::" + TRIGGER_ID.get(form, "test_trigger"))


# the variants of a rule (an option read on the controller) run without xdist only
@pytest.mark.parametrize("rule", [rule for rule in RULES if "," not in rule])
def test_gate_and_exit_status_under_xdist(pytester, monkeypatch, rule):
    run = runner(pytester, rule)
    prepare(pytester, monkeypatch, rule, {f"test_{form}": scenario(rule, form) for form in FORMS}, run)
    res = run("-n", "2", "--junitxml", "j.xml", *RULES[rule][2])
    doc = check_gate(pytester, res, rule, junit=True, n=len(FORMS))
    for form in FORMS:
        check_trigger(res, doc, rule, f"test_{form}.py::" + TRIGGER_ID.get(form, "test_trigger"))
    assert doc["run"]["workers"] == 2


def test_a_baseline_run_that_deselects_every_requirement_fails(pytester, monkeypatch):
    """-k that matches no requirement of the baseline: no test runs (pytest alone would exit 5, which CI scripts often
    let pass); every baseline requirement is missing from the run, so the gate fails and the run exits 1."""
    run = runner(pytester, "removed")
    prepare(pytester, monkeypatch, "removed", {"test_scenario": scenario("removed", "plain")}, run)
    res = run("-k", "no_such_test", "--certkit-baseline", "base.json")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["gate: FAILED: 3 requirement(s) of the baseline not in this run (*)",
                              "baseline base.json: 0 regressions, 0 improvements, 0 within sampling noise, 0 changed (counts not "
                              "compared), 0 new, 3 removed",
                              "  REMOVED test_scenario.py::test_gone (was certified)"])


def test_the_settings_line_keeps_to_a_quiet_run(pytester):
    """Under -q pytest shows no header: the settings line of a run that only its requirements make a certkit run stays
    out too (it shows in the control rows of the matrix above otherwise)."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_scenario=scenario("control", "plain"))
    res = pytester.runpytest_inprocess(*QUICK, "-q")
    assert res.ret == pytest.ExitCode.OK and "certkit: seed" not in res.stdout.str()
    res.stdout.fnmatch_lines(["gate: PASSED: all 2 evaluated requirement(s) certified"])


def test_a_collect_only_run_is_not_gated(pytester, monkeypatch):
    """--collect-only runs no requirement by design: a baseline in the configuration does not make it a failed gate."""
    run = runner(pytester, "removed")
    prepare(pytester, monkeypatch, "removed", {"test_scenario": scenario("removed", "plain")}, run)
    res = run("--collect-only", "--certkit-baseline", "base.json")
    assert res.ret == pytest.ExitCode.OK and not [line for line in res.stdout.lines if line.startswith("gate:")]


def test_a_shard_is_gated_on_the_errors_in_its_share_and_the_merge_on_the_rest():
    """A shard's gate (gate.shard_rules) fails on errors only; the same summary without the shard gets every rule."""
    from certkit.gate import decide_document, summarize

    def doc(*statuses, shard=True):
        return {"run": {"gate": {"min_pass_rate": 0.99}, "shard": {"index": 1, "total": 2} if shard else None},
                "summary": summarize([{"status": s} for s in statuses])}

    share = doc("certified", "not certified")
    assert decide_document(share) == "passed"
    assert share["summary"]["gate_reason"] == ("PASSED: shard 1/2: 2 requirements, 0 errors; the pass-rate gate is decided by "
                                               "`certkit merge` of the 2 shards")
    assert decide_document(doc("certified", "error")) == "failed"
    whole = doc("certified", "not certified", shard=False)
    assert decide_document(whole) == "failed" and whole["summary"]["gate_reason"].startswith("FAILED: pass rate 50.0%")
