"""Faults: an interrupted run resumes from the cache; a full disk loses no results."""

import json

import pytest

from tests.plugin.project import CONFTEST, QUICK

SUITE = '''
import os
import signal
import numpy as np
import pytest
from certkit import Case

STOP_AT = int(os.environ.get("STOP_AT", "-1"))

@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("i", range(6))
def test_req(certkit, i):
    if i == STOP_AT:
        # the user presses Ctrl-C here. A shell starts background jobs with SIGINT ignored, and Python then
        # installs no handler; restore the interactive one, so the test does not depend on how it was launched
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGINT)
    certkit.assert_certified(Case(f"c{i}", "hi", np.full((3, 8, 8), 0.6 + 0.05 * i, dtype=np.float32)), radius=0.1, n_max=2000)
'''


def test_sigint_keeps_finished_results_and_the_rerun_reuses_them(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setenv("STOP_AT", "3")
    first = pytester.runpytest_subprocess()
    assert first.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    done = {r["nodeid"].split("[")[1].rstrip("]") for r in doc["results"] if r["status"] == "certified"}
    assert done == {"0", "1", "2"}  # what finished before the interrupt is kept
    monkeypatch.setenv("STOP_AT", "-1")
    second = pytester.runpytest_subprocess()
    assert second.ret == pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    cached = {r["nodeid"].split("[")[1].rstrip("]"): r["certificates"][0]["cached"] for r in doc["results"]}
    assert cached == {"0": True, "1": True, "2": True, "3": False, "4": False, "5": False}  # no finished requirement is repeated


def test_full_disk_for_the_report_loses_no_results(pytester):
    pytester.makeconftest(CONFTEST + '''

import errno
import certkit.report


def _full_disk(doc, path, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


certkit.report.write_report = _full_disk
''')
    pytester.makepyfile(test_suite=SUITE)
    res = pytester.runpytest_subprocess()
    assert res.ret == pytest.ExitCode.INTERNAL_ERROR
    res.stdout.fnmatch_lines(["*certkit: could not write reports/audit.html: No space left on device*"])
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["certified"] == 6  # the results file is intact


def test_full_disk_for_the_results_falls_back(pytester):
    pytester.makeconftest(CONFTEST + '''

import errno
import certkit.plugin.results

_real = certkit.plugin.results.write_results


def _full_disk_once(path, doc):
    if "certkit-results-" not in str(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return _real(path, doc)


certkit.plugin.results.write_results = _full_disk_once
''')
    pytester.makepyfile(test_suite=SUITE)
    res = pytester.runpytest_subprocess("--certkit-report", "none")
    assert res.ret == pytest.ExitCode.INTERNAL_ERROR
    res.stdout.fnmatch_lines(["*could not write reports/results.json: No space left on device; the results were saved to *"])


# --------------------------------------------------------------------------- the cache never serves another model


class _Threshold:
    """Module factory: 'bright' iff the mean pixel exceeds ``cut``, as a behaviour flag or in the code."""

    @staticmethod
    def flag(cut):
        import torch

        class Flagged(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.cut = cut

            def forward(self, ids, images):
                s = images.mean(dim=(1, 2, 3)) - self.cut
                return torch.stack([-s, s], 1)

        return Flagged()


def _certify(tmp_path, module, tokenize=None, **kw):
    import numpy as np

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian, UniformReplace
    from certkit.oracles import LabelOracle

    tokenize = tokenize or (lambda t: [2 + len(w) % 8 for w in t.split()])
    model = TorchClassifier(module, ["dark", "bright"], tokenize, vocab_size=10, special_ids=[0, 1], mask_id=0, **kw)
    s = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.25), text=UniformReplace(0.2, 8), cache=tmp_path / "cache")
    return s.certify(Case("c", "pick it up", np.full((3, 8, 8), 0.56, dtype=np.float32)), radius=0.05, outcome="bright", n_max=500)


def test_the_cache_serves_no_counts_of_a_changed_model(tmp_path):
    """Same weights (none), different behaviour: a flag, the forward's code, the tokenizer. Each is a fresh stream."""
    import torch

    first = _certify(tmp_path, _Threshold.flag(0.5))
    assert not first.cached and first.timings["forward_samples"] > 0
    again = _certify(tmp_path, _Threshold.flag(0.5))
    assert again.cached and again.timings.get("forward_samples", 0) == 0  # unchanged: served from the cache

    flag = _certify(tmp_path, _Threshold.flag(0.6))  # a behaviour flag
    assert not flag.cached and flag.timings["forward_samples"] > 0

    class Other(torch.nn.Module):  # other code, same (empty) state_dict
        def forward(self, ids, images):
            s = images.amax(dim=(1, 2, 3)) - 0.9
            return torch.stack([-s, s], 1)

    code = _certify(tmp_path, Other())
    assert not code.cached and code.timings["forward_samples"] > 0

    tokenizer = _certify(tmp_path, _Threshold.flag(0.5), tokenize=lambda t: [3 for _ in t.split()])
    assert not tokenizer.cached and tokenizer.timings["forward_samples"] > 0
    assert len({c.model_fingerprint for c in (first, flag, code, tokenizer)}) == 4


# --------------------------------------------------------------------------- outcomes the gate must see

XFAIL_ERROR = '''
import numpy as np
import pytest
from certkit import Case


@pytest.mark.certkit(beta=0.0, outcome="bright")
def test_sound(certkit):
    certkit.assert_certified(Case("ok", "hi", np.full((3, 8, 8), 0.9, dtype=np.float32)), radius=0.05, n_max=500)


@pytest.mark.xfail(reason="known to be flaky")
@pytest.mark.certkit(beta=0.0, outcome="bright")
def test_errors_under_xfail(certkit):
    certkit.assert_certified(Case("bad", "hi", np.full((3, 8, 8), 0.9, dtype=np.float32)), radius=0.05, n_max=500, alpha=2.0)


@pytest.mark.xfail(reason="model may crash")
@pytest.mark.certkit(beta=0.0, outcome="bright")
def test_crashes_under_xfail(certkit):
    raise RuntimeError("CUDA error: device-side assert triggered")
'''


def test_an_error_is_an_error_whatever_the_markers(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=XFAIL_ERROR)
    res = pytester.runpytest_subprocess("--certkit-min-pass-rate", "0.5")
    assert res.ret != pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    status = {r["nodeid"].split("::")[1]: r["status"] for r in doc["results"]}
    assert status == {"test_sound": "certified", "test_errors_under_xfail": "error", "test_crashes_under_xfail": "error"}
    errors = {r["nodeid"].split("::")[1]: r["error"] for r in doc["results"] if r["error"]}
    assert "alpha must lie strictly between 0 and 1" in errors["test_errors_under_xfail"]
    assert "CUDA error" in errors["test_crashes_under_xfail"]
    assert doc["summary"]["gate"] == "failed"


STOPPING = '''
import numpy as np
import pytest
from certkit import Case


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("value", [0.95, 0.2, 0.9, 0.9])
def test_req(certkit, value):
    certkit.assert_certified(Case(f"c{value}", "hi", np.full((3, 8, 8), value, dtype=np.float32)), radius=0.05, n_max=500)
'''


@pytest.mark.parametrize("args, reason", [(("-x",), "stopped early"), (("--maxfail", "1"), "stopped early"),
                                          (("-n", "2", "-x"), "stopped early")], ids=["-x", "--maxfail", "xdist -x"])
def test_a_run_stopped_early_is_incomplete_never_passed(pytester, args, reason):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=STOPPING)
    res = pytester.runpytest_subprocess("-p", "no:randomly", *args)  # the second requirement fails and stops the run
    assert res.ret != pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["gate"] == "incomplete"
    assert any(reason in r for r in doc["summary"]["incomplete"])
    html = (pytester.path / "reports" / "audit.html").read_text()
    verdict = html.split('id="verdict">', 1)[1].split("</div>", 1)[0].strip()  # the report's banner: the verdict, once
    assert verdict.startswith("INCOMPLETE: the run did not finish") and "PASSED" not in verdict
    res.stdout.fnmatch_lines(["*gate: INCOMPLETE*"])


@pytest.mark.parametrize("args", [("--certkit-min-pass-rate", "0"), ()], ids=["configured", "known-from-its-requirements"])
def test_sigterm_keeps_finished_results_and_says_incomplete(pytester, monkeypatch, args):
    """A job runner's SIGTERM (CI timeout, preemption) ends the run like Ctrl-C: what finished is written, the gate
    says incomplete, the exit code is not 0. Also in a run with no certkit option or ini key (armed at the first
    requirement)."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE.replace(
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n        os.kill(os.getpid(), signal.SIGINT)",
        "os.kill(os.getpid(), signal.SIGTERM)"))
    monkeypatch.setenv("STOP_AT", "2")
    res = pytester.runpytest_subprocess("-p", "no:randomly", *args)
    assert res.ret != pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["gate"] == "incomplete"
    assert [r["status"] for r in doc["results"]] == ["certified", "certified"]
    assert any("SIGTERM" in r for r in doc["summary"]["incomplete"])


EARLY_SIGTERM = '''
import os
import signal


def test_first(certkit):
    os.kill(os.getpid(), signal.SIGTERM)  # before any requirement of the run has finished
'''


def test_sigterm_before_the_first_requirement_finishes_still_writes_the_results(pytester):
    """A project that only uses the fixture (no certkit option or ini key): the handler is armed at collection, so a
    SIGTERM during the first requirement still writes results.json and says incomplete."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=EARLY_SIGTERM)
    res = pytester.runpytest_subprocess("-p", "no:randomly")
    assert res.ret != pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["gate"] == "incomplete" and any("SIGTERM" in r for r in doc["summary"]["incomplete"])


def test_a_project_without_certkit_keeps_the_default_sigterm(pytester):
    pytester.makepyfile(test_plain="import signal\n\ndef test_a():\n    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_collection_errors_make_the_run_incomplete(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=STOPPING, test_broken="def test_x(:\n    pass\n")
    res = pytester.runpytest_subprocess("--certkit-min-pass-rate", "0", "--continue-on-collection-errors")
    assert res.ret != pytest.ExitCode.OK
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["gate"] == "incomplete"
    assert any("collection error" in r for r in doc["summary"]["incomplete"])
    assert any("test_broken.py: " in r for r in doc["summary"]["incomplete"])  # where, and the error's own message


# a run that stops before or during its collection: (test module, pytest options, the reason results.json must give)
STOPS_IN_COLLECTION = {
    "missing image": ('from certkit import load_cases\nCASES = load_cases("cases.csv")\n', (),
                      "test_audit.py: cases.csv:2: image: file 'missing.png' does not exist"),
    "bad marker": ('import pytest\n\n@pytest.mark.certkti(sigma=0.5)\ndef test_a(certkit):\n    pass\n', ("--strict-markers",),
                   "test_audit.py: Failed: 'certkti' not found in `markers` configuration option"),
    "import error": ("import no_such_module_here\n", ("--certkit-min-pass-rate", "0"),
                     "test_audit.py: ModuleNotFoundError: No module named 'no_such_module_here'"),
    "Ctrl-C": ("raise KeyboardInterrupt\n", (), "interrupted (Ctrl-C) during the collection, before any requirement ran"),
}


@pytest.mark.parametrize("stop", STOPS_IN_COLLECTION)
def test_a_run_stopped_in_its_collection_replaces_the_last_runs_files_with_incomplete_ones(pytester, stop):
    """Issue 28: a CI job that archives reports/ must not file the previous run's PASSED results. The stopped run
    writes results.json, audit.html and a history line saying INCOMPLETE and why, and exits non-zero; the project
    is a certkit project by its conftest's certkit_model even without any certkit option."""
    import torch  # noqa: F401 - imported here, not in the in-process run, which drops what it imports (torch cannot be imported twice)

    module, options, reason = STOPS_IN_COLLECTION[stop]
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n")
    pytester.makepyfile(test_audit=module)
    (pytester.path / "cases.csv").write_text("id,prompt,image\nc0,hi,missing.png\n")
    reports = pytester.path / "reports"
    reports.mkdir()
    (reports / "results.json").write_text('{"stale": "the last run passed"}')
    (reports / "audit.html").write_text("<html>Gate PASSED (the last run)</html>")
    old = {"finished": "2026-01-01T00:00:00Z", "requirements": 3, "certified": 3, "pass_rate": 1.0, "mean_radius": 0.1}
    (reports / "history.jsonl").write_text(json.dumps(old) + "\n")
    res = pytester.runpytest_inprocess(*QUICK, *options, no_reraise_ctrlc=True)
    assert res.ret not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), res.stdout.str()
    doc = json.loads((reports / "results.json").read_text())
    assert doc["summary"]["gate"] == "incomplete" and doc["results"] == []
    assert any(reason in r for r in doc["summary"]["incomplete"]), doc["summary"]["incomplete"]
    assert reason in doc["summary"]["gate_reason"]
    html = (reports / "audit.html").read_text()
    assert "INCOMPLETE" in html and "the last run" not in html
    lines = (reports / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["requirements"] == 0
    assert json.loads(lines[1]).get("gate", "incomplete") == "incomplete"
    res.stdout.fnmatch_lines(["gate: INCOMPLETE: the run did not finish (*); no requirement ran, and the results, report and history "
                              "say so"])


def test_a_project_without_certkit_stopped_in_its_collection_writes_nothing(pytester):
    """certkit installed in a project that does not use it: a collection error there writes no certkit files."""
    pytester.makepyfile(test_plain="import no_such_module_here\n")
    res = pytester.runpytest_inprocess(*QUICK)
    assert res.ret == pytest.ExitCode.INTERRUPTED and not (pytester.path / "reports").exists()


# --------------------------------------------------------------------------- the cache under pressure


def _warm_cache(tmp_path):
    return _certify(tmp_path, _Threshold.flag(0.5))


def test_a_cache_locked_by_another_process_is_left_alone(tmp_path):
    """Another process holds the lock past the timeout: certkit runs without the cache, warns, and moves nothing."""
    import sqlite3

    from certkit.cache import CacheWarning, CountCache

    _warm_cache(tmp_path)
    holder = sqlite3.connect(tmp_path / "cache" / "counts.sqlite")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.warns(CacheWarning, match="locked"):
            cache = CountCache(tmp_path / "cache", timeout=0.2)
            cache.put("k", ("a", "b"), __import__("numpy").zeros(4, dtype="uint8"))
        assert cache.disabled and not cache.rebuilt
        assert not list((tmp_path / "cache").glob("*.corrupt-*"))
    finally:
        holder.rollback()
        holder.close()
    assert _warm_cache(tmp_path).cached  # the live cache kept its counts


def test_a_cache_directory_that_is_a_file_runs_without_the_cache(tmp_path):
    from certkit.cache import CacheWarning

    (tmp_path / "cache").write_text("not a folder")
    with pytest.warns(CacheWarning, match="off for this run"):
        cert = _certify(tmp_path, _Threshold.flag(0.5))
    assert cert.n > 0 and not cert.cached and (tmp_path / "cache").read_text() == "not a folder"


# --------------------------------------------------------------------------- samples drawn before a failure are kept


class _Failing:
    """Module factory: 'bright' iff the mean pixel exceeds 0.5; from its ``fail_at``-th call on it raises ``error``
    (a dead server, Ctrl-C). The failure is private state: the fingerprint, so the cache key, is the healthy model's."""

    @staticmethod
    def build(fail_at=None, error=None):
        import torch

        class Flaky(torch.nn.Module):
            def forward(self, ids, images):
                self._calls += 1
                if self._fail_at is not None and self._calls >= self._fail_at:
                    raise self._error
                s = images.mean(dim=(1, 2, 3)) - 0.5
                return torch.stack([-s, s], 1)

        module = Flaky()
        module._calls, module._fail_at, module._error = 0, fail_at, error
        return module


def _draw(cache, module, mode):
    import numpy as np

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian
    from certkit.oracles import LabelOracle

    model = TorchClassifier(module, ["dark", "bright"], lambda t: [2 + len(w) % 8 for w in t.split()], vocab_size=10,
                            special_ids=[0, 1], batch_size=32)
    s = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), cache=cache)
    c = Case("c", "pick it up", np.full((3, 8, 8), 0.5, dtype=np.float32))
    if mode == "certify":
        return s.certify(c, outcome="bright", n_max=600)  # p_A = 1/2 = p*: it runs to n_max
    return s.frontier(c, outcome="bright", n=600)


@pytest.mark.parametrize("mode", ["certify", "frontier"])
@pytest.mark.parametrize("error", [RuntimeError("connection refused: the server died"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_samples_drawn_before_a_failure_are_cached_and_not_redrawn(tmp_path, mode, error):
    """Issue 21.7: the chunks a requirement drew before its model failed (or the run was interrupted: Ctrl-C, and SIGTERM,
    which a certkit run turns into the same interrupt) are in the cache; the rerun reads them and draws only the rest,
    and its counts are those of a run that never failed."""
    from certkit.cache import CountCache
    from certkit.models import ModelError

    whole = _draw(None, _Failing.build(), mode)
    assert whole.timings["forward_samples"] > 5 * 32
    with pytest.raises(ModelError if isinstance(error, Exception) else KeyboardInterrupt):
        _draw(tmp_path, _Failing.build(fail_at=6, error=error), mode)  # five batches of 32 answered
    cache = CountCache(tmp_path)
    (stored,) = [row[0] for row in cache._conn.execute("SELECT length(labels) FROM streams")]
    assert stored == 5 * 32
    rerun = _draw(tmp_path, _Failing.build(), mode)
    assert rerun.timings["forward_samples"] == whole.timings["forward_samples"] - 5 * 32
    assert (rerun.status, rerun.n, rerun.successes, rerun.label_counts, rerun.p_a_lower) == (
        whole.status, whole.n, whole.successes, whole.label_counts, whole.p_a_lower)


SIGTERM_MID_REQUIREMENT = '''
import os
import signal
import numpy as np
import pytest
import torch
from certkit import Case
from certkit.models import TorchClassifier

CALLS = [0]


class Bright(torch.nn.Module):
    def forward(self, ids, images):
        CALLS[0] += 1
        if CALLS[0] == int(os.environ.get("TERM_AT", "0")):
            os.kill(os.getpid(), signal.SIGTERM)  # the job runner's timeout, mid-requirement
        s = images.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-s, s], 1)


@pytest.fixture(scope="session")
def certkit_model():
    return TorchClassifier(Bright(), ["dark", "bright"], lambda t: [2 + len(w) % 20 for w in t.split()],
                           vocab_size=24, special_ids=[0, 1], mask_id=0, batch_size=32)


@pytest.mark.certkit(beta=0.0, outcome="bright", n_max=600)
def test_req(certkit):
    certkit.assert_certified(Case("c", "hi", np.full((3, 8, 8), 0.5, dtype=np.float32)))
'''


def test_sigterm_mid_requirement_keeps_its_drawn_samples(pytester, monkeypatch):
    """A SIGTERM while a requirement samples: the run stops, and the rerun draws only what the first did not."""
    pytester.makeconftest(CONFTEST.split("@pytest.fixture(scope=\"session\")\ndef certkit_model")[0]
                          + "@pytest.fixture(scope=\"session\")\ndef certkit_oracle():\n    return LabelOracle([\"dark\", \"bright\"])\n")
    pytester.makepyfile(test_suite=SIGTERM_MID_REQUIREMENT)
    monkeypatch.setenv("TERM_AT", "6")
    first = pytester.runpytest_subprocess("--certkit-min-pass-rate", "0")
    assert first.ret == pytest.ExitCode.INTERRUPTED
    first.stdout.fnmatch_lines(["*KeyboardInterrupt: SIGTERM*"])
    monkeypatch.setenv("TERM_AT", "0")
    pytester.runpytest_subprocess("--certkit-min-pass-rate", "0")
    (cert,) = json.loads((pytester.path / "reports" / "results.json").read_text())["results"][0]["certificates"]
    assert cert["n"] == 600 and cert["timings"]["forward_samples"] == 608 - 5 * 32  # five batches were answered before
