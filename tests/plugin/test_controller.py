"""The controller (certkit/plugin/controller.py) and JUnit XML: a gate that fails is the failed test certkit::gate,
xunit2 stays valid and small, xunit1 and legacy carry one line per certificate."""

import json

import pytest

# junit-10.xsd (the schema GitLab, Jenkins and pytest's xunit2 follow): a testcase holds only these elements
_XUNIT2_TESTCASE_CHILDREN = {"skipped", "error", "failure", "system-out", "system-err"}


def _junit(pytester, name):
    import xml.etree.ElementTree as ET

    path = pytester.path / name
    return ET.parse(path).getroot(), path.stat().st_size


def test_junit_xml_shows_a_failed_pass_rate_gate(project):
    """A pass-rate gate that fails exits 1; the XML, read alone, must say so: the failed test certkit::gate with the
    gate's sentence. Not-certified requirements under the gate stay apart from skips (type pytest.xfail, NOT CERTIFIED)."""
    res = project.runpytest_subprocess("--junitxml", "j.xml", "--certkit-n-max", "500", "--certkit-min-pass-rate", "1.0")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*FAILED certkit::gate*", "*1 failed*"])
    root, size = _junit(project, "j.xml")
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == 1
    gate = [t for t in suite.iter("testcase") if t.get("classname") == "certkit" and t.get("name") == "gate"]
    assert len(gate) == 1
    failure = gate[0].find("failure")
    assert failure is not None and "FAILED: pass rate" in failure.get("message") + (failure.text or "")
    counted = [t.find("skipped") for t in suite.iter("testcase") if t.find("skipped") is not None]
    assert counted and all(s.get("type") == "pytest.xfail" and "CERTIFIED" in s.get("message") or "INCONCLUSIVE" in s.get("message")
                           for s in counted)
    doc = json.loads((project.path / "reports" / "results.json").read_text())
    assert len(counted) == doc["summary"]["not certified"] + doc["summary"]["inconclusive"]


def test_junit_xml_has_no_gate_failure_when_the_gate_passes(project):
    res = project.runpytest_subprocess("--junitxml", "j.xml", "--certkit-n-max", "500", "--certkit-min-pass-rate", "0.5")
    assert res.ret == pytest.ExitCode.OK
    root, _ = _junit(project, "j.xml")
    assert int(root.find("testsuite").get("failures")) == 0
    assert not [t for t in root.iter("testcase") if t.get("classname") == "certkit"]


def test_junit_xunit2_stays_valid_and_small(project):
    """xunit2 (pytest's default): no testcase properties (junit-10.xsd has none), no thumbnails, no certkit payload."""
    project.runpytest_subprocess("--junitxml", "j.xml", "--certkit-n-max", "300")
    root, size = _junit(project, "j.xml")
    cases = list(root.iter("testcase"))
    assert len(cases) == 9  # 8 requirements and the failed gate
    for case in cases:
        assert {child.tag for child in case} <= _XUNIT2_TESTCASE_CHILDREN, case.get("name")
    text = (project.path / "j.xml").read_text()
    assert "data:image" not in text and "certkit_requirement\"" not in text and size < 20_000
    suite = {p.get("name"): p.get("value") for p in root.find("testsuite").find("properties")}
    doc = json.loads((project.path / "reports" / "results.json").read_text())
    assert suite["certkit_gate"] == doc["summary"]["gate"] == "failed"
    assert suite["certkit_gate_reason"] == doc["summary"]["gate_reason"] and suite["certkit_results"] == "reports/results.json"
    assert suite["certkit_requirements"] == "8"


@pytest.mark.parametrize("family", ["xunit1", "legacy"])
def test_junit_xunit1_attaches_one_line_per_certificate(project, family):
    project.runpytest_subprocess("--junitxml", "j.xml", "--certkit-n-max", "300", "-o", f"junit_family={family}")
    root, size = _junit(project, "j.xml")
    doc = json.loads((project.path / "reports" / "results.json").read_text())
    for case in root.iter("testcase"):
        if case.get("classname") == "certkit":
            continue
        props = [p for p in case.iter("property") if p.get("name") == "certkit_certificate"]
        assert len(props) == 1, case.get("name")
        record = next(r for r in doc["results"] if r["nodeid"].endswith(case.get("name")))
        cert = record["certificates"][0]
        assert props[0].get("value").startswith(f"{cert['status']}: case {cert['case_id']!r}")
        assert f"n = {cert['n']}" in props[0].get("value")
    assert "data:image" not in (project.path / "j.xml").read_text() and size < 20_000
