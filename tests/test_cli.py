"""The certkit command line: output and usage errors."""

import re
import subprocess
import sys

import pytest

from certkit import bounds
from certkit.cli import main
from certkit.noise import Gaussian, UniformReplace


def test_bounds_prints_the_frontier(capsys):
    assert main(["bounds", "--p-a", "0.999", "--sigma", "0.5", "--beta", "0.25", "--vocab", "32000", "--tau", "4.6e-5",
                 "--max-edits", "3"]) == 0
    out = capsys.readouterr().out
    expected = bounds.frontier(0.999, Gaussian(0.5), UniformReplace(0.25, 32000), 3, 4.6e-5)
    for d, r in enumerate(expected):
        assert f"{d:>8}  {r:>20.6f}" in out


def test_bounds_marks_uncertified_budgets(capsys):
    main(["bounds", "--p-a", "0.9", "--sigma", "0.5", "--beta", "0.25", "--vocab", "32000", "--max-edits", "2"])
    out = capsys.readouterr().out
    assert "not certified" in out


def test_plan_prints_samples(capsys):
    assert main(["plan", "--radius", "0.5", "--sigma", "0.5", "--alpha", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "p* (smallest p_A that certifies): 0.841345" in out
    assert "n >= 40" in out  # ln(1000) / ln(1 / Phi(1)) = 39.97


def test_plan_echoes_the_noise_it_read(capsys):
    assert main(["plan", "--radius", "0.1", "--edits", "1", "--sigma", "0.5", "--beta", "0.25", "--vocab", "32000", "--tau", "4.6e-5"]) == 0
    assert "noise: sigma = 0.5, text kernel = uniform (beta = 0.25), alphabet V = 32000 (--vocab)\n" in capsys.readouterr().out
    assert main(["plan", "--radius", "0.1", "--edits", "1", "--sigma", "0.25", "--beta", "0.1", "--kernel", "mask", "--tau", "0.01"]) == 0
    assert "noise: sigma = 0.25, text kernel = mask (beta = 0.1; no alphabet)\n" in capsys.readouterr().out
    assert main(["plan", "--radius", "0.1"]) == 0
    assert "noise: sigma = 0.25, no text kernel (no --beta: the requirement edits no token)\n" in capsys.readouterr().out


def _plan(capsys, *args) -> tuple[int, str]:
    code = main(["plan", *args])
    return code, capsys.readouterr().out


def test_plan_reports_unreachable_requirements_and_what_is_reachable(capsys):
    """Mask kernel: at most beta**d = 0.25 of the adversarial mass can stay on A, below tau = 1/2: no sample count
    certifies it, at any radius; exit 3 and the largest threshold that is reachable, which is."""
    mask = ["--radius", "0.1", "--edits", "2", "--sigma", "0.5", "--beta", "0.5", "--kernel", "mask"]
    code, out = _plan(capsys, *mask)
    assert code == 3 and "unreachable -- no number of samples can certify" in out
    assert "no image radius at tau = 0.5, not even 0" in out
    tau = re.search(r"threshold tau up to ([0-9.e-]+) at image l2 radius 0.1", out).group(1)
    assert 0.24 < float(tau) < 0.25 and _plan(capsys, *mask, "--tau", tau)[0] == 0


def test_plan_says_when_the_cap_is_too_small_and_the_largest_reachable_radius(capsys):
    """Reachable with more samples, not with n_max: exit 3, and the radius and threshold it prints are reachable, and
    barely (a little more of either is not)."""
    code, out = _plan(capsys, "--radius", "3", "--sigma", "0.5")
    assert code == 3 and "unreachable: even every sample agreeing needs" in out
    radius = float(re.search(r"image l2 radius up to ([0-9.]+) at tau = 0.5", out).group(1))
    assert _plan(capsys, "--radius", str(radius), "--sigma", "0.5")[0] == 0
    assert _plan(capsys, "--radius", str(radius + 1e-4), "--sigma", "0.5")[0] == 3
    tau = float(re.search(r"threshold tau up to ([0-9.e-]+) at image l2 radius 3.0", out).group(1))
    assert _plan(capsys, "--radius", "3", "--sigma", "0.5", "--tau", str(tau))[0] == 0
    assert _plan(capsys, "--radius", "3", "--sigma", "0.5", "--tau", str(tau * 1.01))[0] == 3
    code, out = _plan(capsys, "--radius", "0.1", "--edits", "3", "--sigma", "0.5", "--beta", "0.25", "--vocab", "32000")
    assert code == 3 and "no image radius at tau = 0.5, not even 0" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bounds", "--p-a", "1.5", "--sigma", "0.5"], "p_a must lie strictly between 0 and 1"),
        (["bounds", "--p-a", "0.9", "--sigma", "-1"], "--sigma must be > 0"),
        (["bounds", "--p-a", "0.9", "--sigma", "abc"], "--sigma must be a number"),
        (["bounds", "--p-a", "0.9", "--sigma", "0.5", "--beta", "0.3"], "needs --vocab"),
        (["bounds", "--p-a", "0.9", "--sigma", "0.5", "--beta", "1.2", "--vocab", "9"], "--beta must lie strictly between"),
        (["bounds", "--p-a", "0.9", "--sigma", "0.5", "--beta", "0.2", "--vocab", "1"], "--vocab must be at least 2"),
        (["plan", "--radius", "0.5", "--sigma", "0.5", "--edits", "2"], "needs a text kernel"),
        (["plan", "--radius", "0.5", "--sigma", "0.5", "--alpha", "0"], "--alpha must lie strictly between"),
        (["plan", "--radius", "0.5", "--sigma", "0.5", "--oracle-error", "1"], "--oracle-error must be below 1"),
        (["plan", "--radius", "0.5", "--sigma", "0.5", "--edits", "1.5"], "--edits must be a whole number"),
    ],
)
def test_usage_errors_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "certkit", "bounds", "--p-a", "0.9", "--sigma", "1", "--max-edits", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1.281552" in out.stdout  # Phi^-1(0.9)


def test_audit_passes_pytest_flags_through_in_order(tmp_path, capfd, monkeypatch):
    suite = tmp_path / "audits"
    suite.mkdir()
    (suite / "test_x.py").write_text("def test_alpha():\n    pass\n\ndef test_beta():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    rc = main(["audit", "--path", str(suite), "-q", "-k", "alpha and not beta", "-p", "no:cacheprovider", "-p", "no:xdist"])
    out = capfd.readouterr().out
    assert rc == 0 and "1 passed, 1 deselected" in out
    assert main(["audit", "--path", str(suite), "-x", "-q", "--co", "-p", "no:cacheprovider"]) == 0
    assert "2 tests collected" in capfd.readouterr().out


def test_audit_without_suites_is_not_a_pass(tmp_path, capfd):
    assert main(["audit", "--path", str(tmp_path / "none")]) == 5
    assert "no audits yet" in capfd.readouterr().err


def test_plan_reads_the_alphabet_from_a_model_folder(capsys):
    """--model DIR gives the alphabet VisionLanguageModel certifies over (the demo assistant's), no weights loaded."""
    from importlib.resources import files

    from certkit.models import VisionLanguageModel

    folder = files("certkit.demo") / "weights" / "assistant"
    vocab = int(VisionLanguageModel.from_pretrained(str(folder)).alphabet.numel())
    common = ["plan", "--radius", "0.1", "--edits", "1", "--sigma", "0.5", "--beta", "0.25", "--threshold", "4.6e-5"]
    assert main(common + ["--model", str(folder)]) == 0
    by_model = capsys.readouterr().out
    assert main(common + ["--vocab", str(vocab)]) == 0
    by_vocab = capsys.readouterr().out
    source = f"read from --model {folder}: its tokenizer's ids less the special and image-layout tokens"
    assert f"alphabet V = {vocab} ({source})" in by_model and by_model.replace(source, "--vocab") == by_vocab


def test_plan_refuses_a_folder_that_is_not_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--radius", "0.1", "--edits", "1", "--beta", "0.25", "--model", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--model" in err and "give --vocab instead" in err and "Traceback" not in err


def test_threshold_and_tau_are_one_option(capsys):
    main(["plan", "--radius", "0.25", "--threshold", "0.3"])
    by_name = capsys.readouterr().out
    main(["plan", "--radius", "0.25", "--tau", "0.3"])
    assert by_name == capsys.readouterr().out and "tau = 0.3," in by_name


def test_a_closed_pipe_ends_quietly():
    """`certkit plan ... | head -1`: no BrokenPipeError traceback. The reader closes before the command writes (its
    imports alone take longer than closing a pipe), so every write meets a closed pipe."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "plan", "--radius", "0.25"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
