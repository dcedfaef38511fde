"""The live view of a run (certkit/plugin/progress.py): requirements done / total, samples/s and an ETA as lines in the
terminal, under xdist too, quiet under -q, and the run's samples/s in results.json."""

import re

import pytest

from certkit.plugin import progress
from tests.plugin.project import QUICK, _results

QUIET_FILES = ("--certkit-report", "none", "--certkit-history", "none", "--certkit-cache-dir", "none", "--certkit-n-max", "500")
LINE = re.compile(r"certkit progress: (\d+)/(\d+) requirements \((\d+)%\), ([\d,]+) samples drawn, ([\d,.]+) samples/s, \S+ elapsed"
                  r"(, ETA \S+)?$")


def _progress_lines(res):
    return [LINE.match(line) for line in res.outlines if line.startswith("certkit progress:")]


def test_a_line_per_requirement_with_done_total_samples_and_eta(project):
    """--certkit-progress 0: one line after each of the 8 requirements, done counting up to 8/8 with the share, the
    samples drawn never falling and the ETA on every line but the last; results.json records the samples/s over the
    requirements' wall time, which the terminal's certkit section repeats."""
    res = project.runpytest_inprocess(*QUICK, *QUIET_FILES, "--certkit-progress", "0")
    lines = _progress_lines(res)
    assert len(lines) == 8 and all(lines), res.outlines
    at = [i for i, line in enumerate(res.outlines) if line.startswith("certkit progress:")]
    assert all(res.outlines[i - 1].strip() for i in at), res.outlines  # the line follows the test's letter, no blank line
    assert [int(m.group(1)) for m in lines] == list(range(1, 9)) and {m.group(2) for m in lines} == {"8"}
    assert [int(m.group(3)) for m in lines] == [round(100 * k / 8) for k in range(1, 9)]
    samples = [int(m.group(4).replace(",", "")) for m in lines]
    assert samples == sorted(samples) and samples[-1] > 0
    assert all(m.group(6) for m in lines[:-1]) and lines[-1].group(6) is None
    summary = _results(project, "reports/results.json")["summary"]
    assert samples[-1] == summary["forward_samples"]
    wall, rate = summary["sampling_wall_s"], summary["samples_per_second"]
    assert 0 < wall < _results(project, "reports/results.json")["run"]["duration_s"]
    assert abs(rate * wall - summary["forward_samples"]) <= rate * 0.0005 + 0.01  # the wall time is kept to the millisecond
    res.stdout.fnmatch_lines([f"throughput: {rate:,.1f} samples/s ({summary['forward_samples']:,} forward passes in *"])


def test_progress_under_xdist_knows_the_total(project):
    """-n 2: the controller collects nothing, yet each line knows the 8 requirements the workers collected, and the last
    says 8/8 with every sample the certificates drew."""
    res = project.runpytest_subprocess("-p", "no:cacheprovider", *QUIET_FILES, "-n", "2", "--certkit-progress", "0")
    lines = _progress_lines(res)
    assert len(lines) == 8 and all(lines), res.outlines
    at = [i for i, line in enumerate(res.outlines) if line.startswith("certkit progress:")]
    assert all(res.outlines[i - 1].strip() for i in at), res.outlines  # a line of its own after the letters, no blank line
    assert {m.group(2) for m in lines} == {"8"} and lines[-1].group(1) == "8"
    summary = _results(project, "reports/results.json")["summary"]
    assert int(lines[-1].group(4).replace(",", "")) == summary["forward_samples"] > 0
    assert summary["samples_per_second"] > 0


def test_quiet_runs_show_no_progress_unless_asked(project, monkeypatch):
    """With the default interval made 0, a plain run shows the lines and -q none; -q with the option given shows them."""
    monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 0.0)
    assert len(_progress_lines(project.runpytest_inprocess(*QUICK, *QUIET_FILES))) == 8
    quiet = project.runpytest_inprocess(*QUICK, *QUIET_FILES, "-q")
    assert not _progress_lines(quiet) and "certkit progress" not in quiet.stdout.str()
    assert len(_progress_lines(project.runpytest_inprocess(*QUICK, *QUIET_FILES, "-q", "--certkit-progress", "0"))) == 8


def test_progress_off_and_the_default_interval(project):
    """off writes no line; the default (30 s) writes none in a run shorter than that."""
    for args in (("--certkit-progress", "off"), ()):
        res = project.runpytest_inprocess(*QUICK, *QUIET_FILES, *args)
        assert res.ret == pytest.ExitCode.TESTS_FAILED  # the suite's gate fails (0.51 is not certified); it ran
        assert "certkit progress" not in res.stdout.str()


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_interval_is_a_usage_error(project, value):
    res = project.runpytest_inprocess(*QUICK, *QUIET_FILES, f"--certkit-progress={value}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*certkit: --certkit-progress (ini certkit_progress) = '{value}': give the seconds between*"])


def test_progress_line_and_durations():
    """The ETA is the wall time per requirement finished times the requirements left; durations read as a person
    would; an unknown total or an unstarted clock leaves out what cannot be said."""
    assert progress.progress_line(10, 40, 12_345, 60.0) == ("certkit progress: 10/40 requirements (25%), 12,345 samples drawn, "
                                                             "205.8 samples/s, 1m00s elapsed, ETA 3m00s")
    assert progress.progress_line(40, 40, 100, 4.0).endswith("25.0 samples/s, 4s elapsed")
    assert progress.progress_line(3, 0, 7, None) == "certkit progress: 3 requirements, 7 samples drawn"
    assert [progress.duration_text(s) for s in (0, 59.9, 60, 3599, 3600, 7 * 3600 + 61)] == ["0s", "59s", "1m00s", "59m59s", "1h00m",
                                                                                           "7h01m"]
