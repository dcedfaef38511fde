"""The ``certkit`` fixture (certkit/plugin/fixtures.py): a project without a model fixture is told what to define.
The fixture's arguments and markers, bad and good, are in test_bad_inputs.py."""

import pytest

from tests.plugin.project import _results


def test_missing_model_fixture_explains_itself(pytester):
    pytester.makepyfile(test_nf="def test_nf(certkit):\n    pass\n")
    res = pytester.runpytest_subprocess("--certkit-json", "n.json")
    assert res.ret != pytest.ExitCode.OK
    assert "define a session-scoped `certkit_model` fixture" in res.stdout.str()
    assert _results(pytester, "n.json")["results"][0]["status"] == "error"
