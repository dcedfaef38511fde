"""Settings (certkit/plugin/settings.py): command line over marker over ini key, bad settings as usage errors, the
marker's checks and registration, and paths anchored at the rootdir."""

import pytest

from tests.plugin.project import CONFTEST, TESTS, _results


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
