"""The certkit pytest plugin, exercised through pytester in fresh pytest processes."""

import json
import os

import numpy as np
import pytest

CONFTEST = '''
import numpy as np
import pytest
import torch
from certkit.models import TorchClassifier
from certkit.oracles import LabelOracle


class Bright(torch.nn.Module):
    def forward(self, ids, images):
        s = images.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-s, s], 1)


@pytest.fixture(scope="session")
def certkit_model():
    return TorchClassifier(Bright(), ["dark", "bright"], lambda t: [2 + len(w) % 20 for w in t.split()],
                           vocab_size=24, special_ids=[0, 1], mask_id=0, batch_size=64)


@pytest.fixture(scope="session")
def certkit_oracle():
    return LabelOracle(["dark", "bright"])
'''

TESTS = '''
import numpy as np
import pytest
from certkit import Case

CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), v, dtype=np.float32)) for i, v in enumerate([0.9, 0.8, 0.62, 0.51])]


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("radius", [0.05, 0.2])
def test_bright(certkit, case, radius):
    certkit.assert_certified(case, radius=radius)
'''


def _results(pytester, name="results.json"):
    return json.loads((pytester.path / name).read_text())


def _certs(doc):
    keep = ("case_id", "status", "n", "successes", "p_a_lower", "p_a_upper", "p_adv", "seed", "radius", "edits")
    return {r["nodeid"]: [{k: c[k] for k in keep} for c in r["certificates"]] for r in doc["results"]}


def make_project(pytester, tests: str):
    """A pytester project with the brightness conftest and ``tests`` as test_audit.py."""
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n")
    pytester.makepyfile(test_audit=tests)
    return pytester


@pytest.fixture
def project(pytester):
    return make_project(pytester, TESTS)


def test_same_certificates_with_and_without_xdist(project):
    a = project.runpytest_subprocess("-p", "no:cacheprovider", "--certkit-json", "a.json", "--certkit-cache-dir", "none",
                                     "--certkit-n-max", "2000")
    b = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--certkit-json", "b.json", "--certkit-cache-dir", "none",
                                     "--certkit-n-max", "2000")
    assert a.ret == b.ret
    ca, cb = _certs(_results(project, "a.json")), _certs(_results(project, "b.json"))
    assert len(ca) == 8 and ca == cb
    assert _results(project, "b.json")["run"]["workers"] == 2


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


def test_settings_precedence_cli_over_marker_over_ini(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\ncertkit_alpha = 0.05\ncertkit_sigma = 0.3\ncertkit_beta = 0\n")
    pytester.makepyfile(test_prec='''
import numpy as np
import pytest
from certkit import Case

C = Case("c", "hi", np.full((3, 8, 8), 0.9, dtype=np.float32))
pytestmark = pytest.mark.certkit(alpha=0.02)

def test_ini_sigma_module_alpha(certkit):
    certkit.certify(C, outcome="bright")

@pytest.mark.certkit(alpha=0.03, sigma=0.4)
def test_function_marker(certkit):
    certkit.certify(C, outcome="bright")

class TestClass:
    pytestmark = pytest.mark.certkit(alpha=0.025)
    def test_class_marker(self, certkit):
        certkit.certify(C, outcome="bright")
''')
    pytester.runpytest_subprocess("--certkit-json", "p.json").assert_outcomes(passed=3)
    got = {r["nodeid"].split("::")[-1]: r["certificates"][0] for r in _results(pytester, "p.json")["results"]}
    assert got["test_ini_sigma_module_alpha"]["alpha"] == 0.02 and got["test_ini_sigma_module_alpha"]["image_kernel"]["sigma"] == 0.3
    assert got["test_function_marker"]["alpha"] == 0.03 and got["test_function_marker"]["image_kernel"]["sigma"] == 0.4
    assert got["test_class_marker"]["alpha"] == 0.025
    pytester.runpytest_subprocess("--certkit-json", "p.json", "--certkit-alpha", "0.04", "--certkit-sigma", "0.2").assert_outcomes(passed=3)
    got = [r["certificates"][0] for r in _results(pytester, "p.json")["results"]]
    assert {c["alpha"] for c in got} == {0.04} and {c["image_kernel"]["sigma"] for c in got} == {0.2}


@pytest.mark.parametrize(
    "args, ini, message",
    [
        (["--certkit-alpha", "2"], "", "option --certkit-alpha alpha = 2.0: alpha must lie strictly between 0 and 1"),
        ([], "certkit_beta = 1.5\n", "ini key certkit_beta beta = 1.5: beta must lie in [0, 1)"),
    ],
)
def test_bad_settings_are_usage_errors(pytester, args, ini, message):
    """The wiring from option and ini key to a usage error; every setting's checks are in test_bad_inputs.py."""
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\n" + ini)
    pytester.makepyfile(test_x="def test_x(certkit):\n    pass\n")
    res = pytester.runpytest_subprocess(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()


def test_unknown_marker_setting_is_an_error(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_m='''
import pytest
@pytest.mark.certkit(sigm=0.5)
def test_m(certkit):
    pass
''')
    res = pytester.runpytest_subprocess("--strict-markers")
    assert res.ret != pytest.ExitCode.OK
    assert "unknown setting(s) ['sigm']" in res.stdout.str() + res.stderr.str()


def test_marker_is_registered_strict_markers_clean(pytester):
    pytester.makepyfile(test_s="import pytest\n@pytest.mark.certkit(sigma=0.5)\ndef test_s():\n    pass\n")
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(passed=1)


def test_missing_model_fixture_explains_itself(pytester):
    pytester.makepyfile(test_nf="def test_nf(certkit):\n    pass\n")
    res = pytester.runpytest_subprocess("--certkit-json", "n.json")
    assert res.ret != pytest.ExitCode.OK
    assert "define a session-scoped `certkit_model` fixture" in res.stdout.str()
    assert _results(pytester, "n.json")["results"][0]["status"] == "error"


def _write_png(path):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)


def test_cases_load_from_every_format(tmp_path):
    import certkit

    _write_png(tmp_path / "ok.png")
    (tmp_path / "c.jsonl").write_text('{"id": "a", "prompt": "hi", "image": "ok.png", "expected": "bright", "kind": "x"}\n')
    (tmp_path / "c.yaml").write_text("cases:\n- id: a\n  prompt: hi\n  image: ok.png\n  expected: bright\n  kind: x\n")
    (tmp_path / "c.csv").write_text("id,prompt,image,expected,kind\na,hi,ok.png,bright,x\n")
    loaded = [certkit.load_cases(tmp_path / f) for f in ("c.jsonl", "c.yaml", "c.csv")]
    assert all(len(c) == 1 and c[0].id == "a" and c[0].expected == "bright" and c[0].meta == {"kind": "x"} for c in loaded)
    assert loaded[0][0].content_hash == loaded[1][0].content_hash == loaded[2][0].content_hash


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


def test_unwritable_results_path_is_reported(project):
    (project.path / "blocked").write_text("a file where a folder should be")
    res = project.runpytest_subprocess("--certkit-json", "blocked/r.json", "--certkit-n-max", "300", "--certkit-min-pass-rate", "0")
    assert res.ret == pytest.ExitCode.INTERNAL_ERROR
    res.stdout.fnmatch_lines(["*certkit: could not write blocked/r.json*the results were saved to *certkit-results-* instead*"])
    saved = res.stdout.str().split("the results were saved to ")[1].split(" instead")[0]
    assert json.loads(open(saved).read())["summary"]["requirements"] == 8


PINNING = '''
import os
import pytest

@pytest.mark.parametrize("i", range(4))
def test_pin(i, worker_id):
    with open(f"pin-{worker_id}-{i}.txt", "w") as f:
        f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
'''


def _pins(pytester):
    return {p.name.split("-")[1]: p.read_text() for p in pytester.path.glob("pin-*.txt")}


def test_each_xdist_worker_is_pinned_to_one_gpu(pytester, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makepyfile(test_pin=PINNING)
    pytester.runpytest_subprocess("-n", "2", "--certkit-devices", "3,5").assert_outcomes(passed=4)
    assert _pins(pytester) == {"gw0": "3", "gw1": "5"}


def test_pinning_honours_the_callers_device_list_and_auto(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    pytester.makepyfile(test_pin=PINNING)
    res = pytester.runpytest_subprocess("-n", "auto")  # one worker per visible GPU
    res.assert_outcomes(passed=4)
    res.stdout.fnmatch_lines(["*2 workers*"])
    assert _pins(pytester) == {"gw0": "4", "gw1": "7"}


def test_no_gpu_means_cpu_workers_unpinned(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    pytester.makepyfile(test_pin=PINNING)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=4)
    assert set(_pins(pytester).values()) == {""}


def test_a_run_without_xdist_is_left_alone(pytester):
    """Installed in an environment, the plugin must not break a project's run with xdist disabled."""
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    res = pytester.runpytest_subprocess("-p", "no:xdist")
    assert res.ret == pytest.ExitCode.OK and "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
    res.assert_outcomes(passed=1)


def test_nvidia_smi_is_not_asked_on_a_run_without_workers(pytester, monkeypatch):
    called = _fake_nvidia_smi(pytester, monkeypatch)
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert not called.exists()


THREADS = '''
import os
import pytest
import torch

@pytest.mark.parametrize("i", range(4))
def test_threads(i, worker_id):
    with open(f"threads-{worker_id}-{i}.txt", "w") as f:
        f.write(f"{torch.get_num_threads()} {os.environ.get('OMP_NUM_THREADS', 'unset')}")
'''


@pytest.mark.parametrize("user_threads", [None, "1"])
def test_cpu_workers_share_the_cores_unless_the_user_chose(pytester, monkeypatch, user_threads):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    if user_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", user_threads)
    pytester.makeini("[pytest]\ncertkit_seed = 0\n")  # a certkit run by configuration
    pytester.makepyfile(test_threads=THREADS)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=4)
    seen = {p.read_text() for p in pytester.path.glob("threads-*.txt")}
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert seen == ({f"{share} {share}"} if user_threads is None else {f"1 {user_threads}"})


def _fake_nvidia_smi(pytester, monkeypatch):
    """An nvidia-smi on PATH that lists one GPU and leaves a file behind when it is asked."""
    fake = pytester.path / "bin"
    fake.mkdir()
    called = pytester.path / "called"
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\ntouch {called}\necho 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return called


def test_a_project_without_certkit_keeps_its_threads_and_its_worker_count(pytester, monkeypatch):
    """Installed but unused, certkit changes nothing: no thread share, no nvidia-smi, -n auto as xdist decides."""
    called = _fake_nvidia_smi(pytester, monkeypatch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pytester.makepyfile(test_threads=THREADS)
    res = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=4)
    assert not called.exists()
    assert {p.read_text().split()[1] for p in pytester.path.glob("threads-*.txt")} == {"unset"}
    assert not (pytester.path / "reports").exists()
    assert "certkit:" not in res.stdout.str()  # no report header line either


def test_a_certkit_run_counts_gpus_for_n_auto_and_says_its_settings(pytester, monkeypatch):
    called = _fake_nvidia_smi(pytester, monkeypatch)
    pytester.makeini("[pytest]\ncertkit_seed = 0\n")
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    res = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    assert called.exists()
    res.stdout.fnmatch_lines(["certkit: seed 0, sigma 0.25, * gate: every requirement certified; results reports/results.json",
                              "*created: 1/1 worker*"])


def test_default_paths_are_anchored_at_the_rootdir(pytester, monkeypatch):
    """Started from a subfolder, a certkit run writes its reports where the project keeps them (the rootdir), as
    pytest does for its own cache; a path on the command line is taken from where pytest was started."""
    pytester.makeini("[pytest]\ncertkit_n_max = 300\ncertkit_history = logs/history.jsonl\n")
    sub = pytester.mkdir("audits")
    (sub / "conftest.py").write_text(CONFTEST)
    (sub / "test_audit.py").write_text(TESTS)
    monkeypatch.chdir(sub)
    res = pytester.runpytest_subprocess(".", "--certkit-report", "here.html", "-p", "no:cacheprovider")
    assert (pytester.path / "reports" / "results.json").is_file() and not (sub / "reports").exists()
    assert (pytester.path / "logs" / "history.jsonl").is_file()  # an ini path: from the rootdir
    assert (sub / "here.html").is_file()  # a command-line path: from the invocation directory
    res.stdout.fnmatch_lines([f"written: {pytester.path}/reports/results.json, here.html"])
