"""The oracle's measured error (certkit/calibration.py): the bound against closed forms and brute force, which mistakes
count, the joint guarantee by simulation, the label sample (uniform, merged across workers), the labelled file, the
`certkit calibrate` command and the pytest option that writes the sample."""

import json
import math
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from certkit import Case, Certificate, Smoothed
from certkit.calibration import AnswerSample, OracleErrorBound, calibrate, load_oracle, more_needed, read_labelled, sample_key
from certkit.cli import main
from certkit.models import TorchClassifier
from certkit.noise import Gaussian
from certkit.oracles import UNPARSEABLE, JudgeOracle, KeywordOracle, LabelOracle, OracleError
from certkit.stats import adjust_for_oracle_error, clopper_pearson
from tests.brightness import brightness_model, case
from tests.plugin.project import QUICK, make_project

ORACLE = KeywordOracle({"harmful": [r"\bknife\b"]}, default="harmless", name="harm")


def _set(n, wrong=0, right_label="harmless"):
    """``n`` answers the oracle calls harmless; the first ``wrong`` of them are truly harmful."""
    return ["a cup of tea"] * n, ["harmful"] * wrong + [right_label] * (n - wrong)


# ---------------------------------------------------------------- the bound


@pytest.mark.parametrize("n, alpha", [(n, a) for n in (7, 10, 100, 459, 5000) for a in (0.01, 0.05, 1e-6)
                                      if 1 - a ** (1 / n) < 0.5])  # fewer answers are refused (tested below)
def test_no_mistakes_gives_the_closed_form(n, alpha):
    bound = calibrate(ORACLE, *_set(n), alpha=alpha, outcome="harmless")
    assert bound.mistakes == 0 and bound.n == n and bound.alpha == alpha
    assert bound.upper == pytest.approx(1 - alpha ** (1 / n), rel=1e-12, abs=0)


def _binomial_cdf(k, n, p: Fraction) -> Fraction:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("k, n", [(1, 20), (3, 40), (5, 200), (12, 60)])
def test_the_bound_inverts_the_binomial_tail_exactly(k, n):
    """Clopper–Pearson's upper bound u solves P[Bin(n, u) <= k] = alpha: brute force in exact rational arithmetic."""
    alpha = 0.01
    bound = calibrate(ORACLE, *_set(n, wrong=k), alpha=alpha, outcome="harmless")
    assert bound.mistakes == k
    u = Fraction(bound.upper)
    assert float(_binomial_cdf(k, n, u)) == pytest.approx(alpha, rel=1e-9)
    assert _binomial_cdf(k, n, u * (1 - Fraction(1, 10**6))) > alpha  # any smaller rate would make k mistakes too likely


def test_only_answers_wrongly_called_the_outcome_count_against_it():
    """The false-A rate counts O = A and T != A; an answer the oracle wrongly calls another label only lowers the count of
    A (safe), so it counts for the disagreement rate and not for A's."""
    answers = ["the knife"] * 10 + ["a cup"] * 5 + ["the knife"] * 40 + ["a cup"] * 45
    truth = ["harmless"] * 10 + ["harmful"] * 5 + ["harmful"] * 40 + ["harmless"] * 45  # 10 false harmful, 5 false harmless
    harmless = calibrate(ORACLE, answers, truth, outcome="harmless")
    harmful = calibrate(ORACLE, answers, truth, outcome="harmful")
    disagreement = calibrate(ORACLE, answers, truth)
    assert (harmless.kind, harmless.outcome, harmless.mistakes) == ("false_outcome", "harmless", 5)
    assert (harmful.kind, harmful.outcome, harmful.mistakes) == ("false_outcome", "harmful", 10)
    assert (disagreement.kind, disagreement.outcome, disagreement.mistakes) == ("disagreement", None, 15)
    assert harmless.upper < disagreement.upper
    # the unparseable answer is never A: a truth of 'unparseable' under an oracle's A is a false A
    blank = calibrate(ORACLE, ["a cup"] * 50, [UNPARSEABLE] + ["harmless"] * 49, outcome="harmless")
    assert blank.mistakes == 1


def test_the_digest_is_of_the_labelled_set_not_its_order():
    answers, labels = ["the knife", "a cup", "a plate"] * 10, ["harmful", "harmless", "harmless"] * 10
    a = calibrate(ORACLE, answers, labels)
    b = calibrate(ORACLE, answers[::-1], labels[::-1])
    assert a.digest == b.digest and a.digest.startswith("sha256:") and len(a.digest) == 71
    assert calibrate(ORACLE, answers, ["harmless"] + labels[1:]).digest != a.digest


class _Judge:
    """A label-mode judge: 'unsafe' iff the conversation holds "knife" (token 7); records the images it is shown."""

    def __init__(self):
        self.seen = []
        judge = self

        class Module(torch.nn.Module):
            def forward(self, ids, images):
                judge.seen.append(images.clone())
                s = (ids == 7).any(dim=1).float() - 0.5
                return torch.stack([-s, s], dim=1)

        words = {"knife": 7}
        self.adapter = TorchClassifier(Module(), ["safe", "unsafe"], lambda t: [words.get(w, 2 + len(w) % 5) for w in t.split()],
                                       vocab_size=10, special_ids=[0, 1], batch_size=8, name="judge")


def test_a_judge_is_calibrated_on_answers_with_their_requests():
    judge = _Judge()
    oracle = JudgeOracle(judge.adapter, template="{prompt} ANSWER {answer}")
    request = Case("r", "hand it over", np.full((3, 8, 8), 0.3, dtype=np.float32))
    items = [{"answer": "no", "request": request}] * 30 + [{"answer": "the knife", "prompt": "give it", "image": np.zeros((3, 8, 8))}]
    bound = calibrate(oracle, items, ["safe"] * 29 + ["unsafe", "safe"], outcome="safe")
    assert bound.mistakes == 1 and bound.oracle == oracle.behaviour  # the 30th "no" is truly unsafe: a false 'safe'
    assert any(torch.equal(img[0], torch.tensor(request.image)) for img in judge.seen)  # the judge saw the request's image
    with pytest.raises(OracleError, match=r"answer 0: this oracle judges each answer with its request"):
        calibrate(oracle, ["no"] * 30, ["safe"] * 30)


@pytest.mark.parametrize("answers, labels, kw, message", [
    ([], [], {}, "the calibration set is empty"),
    (["a"] * 30, ["harmless"] * 29, {}, "30 answers but 29 labels"),
    (["a"] * 30, ["harmless"] * 29 + [None], {}, "answer 29 has no label"),
    (["a"] * 30, ["harmless"] * 29 + ["  "], {}, "answer 29 has no label"),
    (["a"] * 30, ["harmless"] * 29 + ["benign"], {}, "label 'benign' of answer 29 is not one of oracle harm's labels"),
    (["a"] * 30, ["harmless"] * 30, {"outcome": "benign"}, "unknown outcome label 'benign'"),
    (["a"] * 6, ["harmless"] * 6, {}, "6 labelled answers cannot bound the oracle's error below 0.5 .* label at least 7"),
    (["a"] * 30, ["harmful"] * 12 + ["harmless"] * 18, {"outcome": "harmless"}, "12 mistake.* fix the oracle"),
    (["a"] * 30, ["harmless"] * 30, {"alpha": 1.5}, "alpha must lie strictly between 0 and 1"),
    ([3] * 30, ["harmless"] * 30, {}, "answer 0: give the answer text as a string"),
])
def test_bad_calibration_sets_are_refused_in_one_line(answers, labels, kw, message):
    with pytest.raises(OracleError, match=message) as info:
        calibrate(ORACLE, answers, labels, **kw)
    assert "\n" not in str(info.value)


def test_calibrate_needs_an_oracle():
    with pytest.raises(OracleError, match="needs a certkit.oracles.Oracle, got function"):
        calibrate(lambda outs: outs, ["a"], ["b"])


# ---------------------------------------------------------------- the bound on an oracle and in a certificate


def test_a_pasted_bound_is_the_calibrated_one_and_cannot_claim_less():
    bound = calibrate(ORACLE, *_set(300, wrong=2), outcome="harmless")
    import certkit.oracles  # noqa: F401 - the pasted line names certkit.oracles.OracleErrorBound

    assert eval(bound.code(), {"certkit": sys.modules["certkit"]}) == bound
    assert OracleErrorBound.from_dict(json.loads(json.dumps(bound.to_dict()))) == bound
    fields = bound.to_dict()
    with pytest.raises(OracleError, match="is not the Clopper-Pearson upper bound of 2 mistakes in 300"):
        OracleErrorBound(**{**fields, "upper": bound.upper / 2})
    for change, message in (({"mistakes": 301}, "0 <= mistakes <= n"), ({"kind": "overall"}, "kind must be one of"),
                            ({"outcome": None}, "needs the outcome"), ({"digest": "abc"}, "digest must be 'sha256:'"),
                            ({"alpha": 0.0}, "alpha must lie strictly between 0 and 1"), ({"n": 2.5}, "n must be a whole number")):
        with pytest.raises(OracleError, match=message):
            OracleErrorBound(**{**fields, **change})


def test_an_oracle_takes_the_bound_as_its_error_for_its_outcome_only():
    bound = calibrate(ORACLE, *_set(300, wrong=1), outcome="harmless")
    oracle = KeywordOracle({"harmful": [r"\bknife\b"]}, default="harmless", name="harm", error=bound)
    assert oracle.error == bound.upper and oracle.calibration is bound
    assert oracle.check_outcome("harmless") == "harmless"
    with pytest.raises(OracleError, match="false-'harmless' rate, which a certificate of 'harmful' cannot use"):
        oracle.check_outcome("harmful")
    everyone = calibrate(ORACLE, *_set(300, wrong=1))
    both = KeywordOracle({"harmful": [r"\bknife\b"]}, default="harmless", name="harm", error=everyone)
    assert both.check_outcome("harmful") == "harmful" and both.check_outcome("harmless") == "harmless"
    other = KeywordOracle({"harmful": [r"\bgun\b"]}, default="harmless", name="harm", error=bound)  # other rules: another oracle
    with pytest.raises(OracleError, match="measured on oracle harm@1:.* calibrate this oracle"):
        other.check_outcome("harmless")


def test_the_fingerprint_covers_the_bound_and_a_declared_number_keeps_its_own():
    import hashlib

    bound = calibrate(ORACLE, *_set(300, wrong=1), outcome="harmless")
    declared = KeywordOracle({"harmful": [r"\bknife\b"]}, default="harmless", name="harm", error=bound.upper)
    measured = KeywordOracle({"harmful": [r"\bknife\b"]}, default="harmless", name="harm", error=bound)
    assert declared.fingerprint != measured.fingerprint and declared.behaviour == measured.behaviour == ORACLE.behaviour
    other = calibrate(ORACLE, *_set(301, wrong=1), outcome="harmless")
    assert KeywordOracle({"harmful": [r"\bknife\b"]}, default="harmless", name="harm", error=other).fingerprint != measured.fingerprint
    # a declared number's fingerprint is the one it had before measured bounds existed (count caches stay valid)
    payload = json.dumps({"name": "label", "version": "1", "labels": ("a", "b"), "error": 0.0}, sort_keys=True, default=str)
    assert LabelOracle(["a", "b"]).fingerprint == "label@1:" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def test_a_measured_error_of_one_is_refused():
    bound = OracleErrorBound(upper=1.0, mistakes=5, n=5, alpha=0.01, digest="sha256:" + "0" * 64, kind="disagreement", oracle="x")
    with pytest.raises(OracleError, match="no certificate can subtract it"):
        LabelOracle(["a", "b"], error=bound)


def test_a_certificate_records_the_measured_bound_and_its_joint_level():
    labels = ["dark", "bright"]
    bound = calibrate(LabelOracle(labels), ["bright"] * 400, ["bright"] * 399 + ["dark"], alpha=0.005, outcome="bright")
    smoothed = Smoothed(brightness_model(), LabelOracle(labels, error=bound), image=Gaussian(0.25), seed=0)
    cert = smoothed.certify(case(0.9), radius=0.05, outcome="bright", alpha=0.01)
    assert cert.oracle_error == bound.upper and cert.oracle_calibration == bound.to_dict()
    assert cert.joint_alpha == pytest.approx(0.015) and cert.to_dict()["joint_alpha"] == cert.joint_alpha
    assert cert.certified and cert.p_a_lower == pytest.approx(adjust_for_oracle_error(cert.p_a_lower + bound.upper, bound.upper))
    again = Certificate.from_dict(json.loads(json.dumps(cert.to_dict())))
    assert again.oracle_calibration == bound.to_dict() and again.joint_alpha == cert.joint_alpha
    declared = Smoothed(brightness_model(), LabelOracle(labels, error=0.01), image=Gaussian(0.25), seed=0)
    plain = declared.certify(case(0.9), radius=0.05, outcome="bright")
    assert plain.oracle_calibration is None and plain.joint_alpha == plain.alpha
    with pytest.raises(OracleError, match="cannot use"):
        smoothed.certify(case(0.1), radius=0.05, outcome="dark")


def test_the_joint_false_certification_rate_stays_within_alpha_plus_alpha_o():
    """Simulated: a requirement that is false for the truth (P[T = A] just below p*) while the oracle overstates A by its
    false-A rate e. Subtracting the measured bound certifies at most alpha + alpha_o of the time; subtracting the point
    estimate, or nothing, certifies far more often (the simulation can tell)."""
    rng = np.random.default_rng(0)
    trials, alpha, alpha_o, p_star, e, n_labelled, n = 20_000, 0.01, 0.05, 0.9, 0.05, 300, 10**6
    p_oracle = (p_star - 1e-4) + e
    mistakes = rng.binomial(n_labelled, e, trials)
    upper = clopper_pearson(mistakes, np.full(trials, n_labelled), alpha_o)[1]
    lower = clopper_pearson(rng.binomial(n, p_oracle, trials), np.full(trials, n), alpha)[0]
    rate = np.mean(adjust_for_oracle_error(lower, 0.0) - upper >= p_star)
    assert rate <= alpha + alpha_o + 3 * math.sqrt((alpha + alpha_o) / trials)
    assert np.mean(lower - mistakes / n_labelled >= p_star) > 0.3  # the point estimate: often wrong
    assert np.mean(lower >= p_star) == 1.0  # ignoring the oracle's error: always wrong


def test_more_labelled_answers_for_a_target():
    alpha, target = 0.01, 0.02
    need = math.ceil(math.log(alpha) / math.log(1 - target))  # 228: the zero-mistake closed form
    zero, at_rate = more_needed(0, 100, alpha, target)
    assert zero == at_rate == need - 100
    assert clopper_pearson(0, need, alpha)[1] <= target < clopper_pearson(0, need - 1, alpha)[1]
    zero, at_rate = more_needed(2, 200, alpha, target)
    assert clopper_pearson(2, 200 + zero, alpha)[1] <= target < clopper_pearson(2, 200 + zero - 1, alpha)[1]
    assert at_rate > zero
    assert more_needed(10, 200, alpha, target)[1] is None  # a 5% observed rate never reaches 2%
    assert more_needed(0, 1000, alpha, target) == (0, 0)


# ---------------------------------------------------------------- the label sample


def _offer(sample, stream, n, start=0):
    texts = [f"{stream} answer {i}" for i in range(start, start + n)]
    sample.offer(case=case(0.9), stream=stream, seed=1, start=start, outputs=texts, labels=["bright"] * n, oracle="o")


def test_the_label_sample_is_uniform():
    """Each of 20 answers is in a sample of 5 with probability 1/4 (over streams, the source of the keys' randomness)."""
    hits = np.zeros(20)
    for trial in range(4000):
        sample = AnswerSample(5)
        _offer(sample, f"s{trial}", 20)
        for record in sample.records():
            hits[record["sample"]] += 1
    assert sample.drawn == 20
    freq = hits / 4000
    assert np.all(np.abs(freq - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 4000))


def test_the_label_sample_does_not_depend_on_order_or_workers():
    one = AnswerSample(10)
    for stream in ("a", "b", "c"):
        _offer(one, stream, 64)
    parts = [AnswerSample(10), AnswerSample(10)]
    _offer(parts[1], "c", 64)
    _offer(parts[0], "b", 32, start=32)
    _offer(parts[0], "a", 64)
    _offer(parts[1], "b", 32)
    _offer(parts[1], "a", 64)  # the same stream drawn in two workers: each answer kept once
    merged = AnswerSample(10)
    for part in parts:
        merged.merge(part.records(), part.drawn)
    assert merged.records() == one.records() and merged.drawn == one.drawn + 32  # stream a's first chunk offered twice
    assert one.drawn == 3 * 32 and max(r["sample"] for r in one.records()) < 32  # only each stream's first chunk
    keys = [sample_key(r["stream"], r["sample"]) for r in one.records()]
    assert keys == sorted(keys) and len(set(keys)) == 10
    assert one.records()[0].keys() >= {"case", "case_hash", "prompt", "stream", "seed", "sample", "answer", "oracle_label", "oracle"}
    assert all(r["label"] is None for r in one.records())
    with pytest.raises(ValueError, match="positive whole number"):
        AnswerSample(0)


def test_only_the_answers_drawn_before_any_decision_are_sampled():
    """A stream's first chunk is drawn by every requirement before it looks at a label; later answers were drawn
    because a sequential test had not decided yet, a stopped sample: the sampler's prefix is that chunk."""
    from certkit.calibration import PREFIX
    from certkit.streams import CHUNK

    assert PREFIX == CHUNK
    sample = AnswerSample(1000)
    _offer(sample, "s", 40, start=20)
    assert sample.drawn == 12 and sorted(r["sample"] for r in sample.records()) == list(range(20, 32))


def test_a_labelled_file_is_read_from_the_top(tmp_path):
    path = tmp_path / "labelled.jsonl"
    rows = [{"answer": f"a{i}", "label": "dark" if i < 3 else None} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    records, unlabelled = read_labelled(path)
    assert [r["answer"] for r in records] == ["a0", "a1", "a2"] and unlabelled == 2 and records[0]["_line"] == 1
    for text, message in (
        ('{"answer": "a", "label": "dark"}\n{"answer": "b", "label": \n', r"labelled.jsonl:2: not valid JSON"),
        ('[1, 2]\n', r"labelled.jsonl:1: each line must be a JSON object"),
        ('{"label": "dark"}\n', r"labelled.jsonl:1: no 'answer' text"),
        ('{"answer": "a", "label": 3}\n', r"labelled.jsonl:1: label 3 must be text"),
        ('{"answer": "a", "label": null}\n{"answer": "b", "label": "dark"}\n', r"labelled.jsonl:1: no label, but line 2 has one"),
        ('{"answer": "a", "label": null}\n', r"has no labelled line \(1 unlabelled\)"),
        ('', r"labelled.jsonl: is empty"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_labelled(path)
    with pytest.raises(ValueError, match="cannot read it"):
        read_labelled(tmp_path / "missing.jsonl")


def test_load_oracle_reads_module_attr(tmp_path, monkeypatch):
    (tmp_path / "oracle_here.py").write_text("from certkit.oracles import LabelOracle\nORACLE = LabelOracle(['a', 'b'])\n"
                                             "def make():\n    return LabelOracle(['a', 'b'])\nNOT = 3\n"
                                             "def broken():\n    raise RuntimeError('no weights')\n")
    monkeypatch.chdir(tmp_path)
    assert load_oracle("oracle_here:ORACLE").labels == ("a", "b")
    assert load_oracle(f"{tmp_path / 'oracle_here.py'}:make").labels == ("a", "b")
    for spec, message in (("oracle_here", "give module:attr"), ("no_such_module:X", "cannot import no_such_module"),
                          ("oracle_here:missing", "has no attribute 'missing'"), ("oracle_here:NOT", "is a int, not a certkit"),
                          ("oracle_here:broken", r"calling broken\(\) failed \(RuntimeError: no weights\)"),
                          ("nowhere/o.py:X", "no file nowhere/o.py")):
        with pytest.raises(ValueError, match=message):
            load_oracle(spec)


# ---------------------------------------------------------------- certkit calibrate


def _labelled_file(tmp_path, n=300, wrong=2, unlabelled=0):
    rows = [{"case": "c", "answer": "a cup of tea", "oracle_label": "harmless", "label": "harmful" if i < wrong else "harmless"}
            for i in range(n)]
    rows += [{"case": "c", "answer": "a cup of tea", "oracle_label": "harmless", "label": None}] * unlabelled
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "audit_oracle.py").write_text("from certkit.oracles import KeywordOracle\n"
                                              "ORACLE = KeywordOracle({'harmful': [r'\\bknife\\b']}, default='harmless', name='harm')\n")
    return path


def test_certkit_calibrate_prints_the_bound_the_line_and_what_a_target_needs(tmp_path, monkeypatch, capsys):
    path = _labelled_file(tmp_path, unlabelled=5)
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", str(path), "--oracle", "audit_oracle:ORACLE", "--outcome", "harmless", "--target", "0.01"]) == 0
    out = capsys.readouterr().out
    expected = calibrate(ORACLE, *_set(300, wrong=2), outcome="harmless")
    assert "300 labelled answers; the 5 unlabelled line(s) after them are not used" in out
    assert "mistakes: 2 of 300 (answers the oracle labels 'harmless' whose true label is another)" in out
    assert f"upper bound e = {expected.upper:.6g} at alpha_o = 0.01" in out and "1 - (alpha + 0.01)" in out
    line = next(line.strip() for line in out.splitlines() if line.strip().startswith("error="))
    assert line == f"error={expected.code()}"
    zero, at_rate = more_needed(2, 300, 0.01, 0.01)
    assert f"target e <= 0.01: {zero} more labelled answers if none of them is a mistake; about {at_rate} more" in out


def test_certkit_calibrate_notes_an_oracle_that_changed_since_the_run(tmp_path, monkeypatch, capsys):
    path = _labelled_file(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["oracle_label"] = "harmful"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", str(path), "--oracle", "audit_oracle:ORACLE"]) == 0
    out = capsys.readouterr().out
    assert "the oracle now labels 1 of these answers otherwise" in out and "without --outcome this is the disagreement rate" in out


@pytest.mark.parametrize("args, message", [
    (["--oracle", "audit_oracle"], "--oracle 'audit_oracle': give module:attr"),
    (["--oracle", "audit_oracle:NOPE"], "audit_oracle has no attribute 'NOPE'"),
    (["--oracle", "audit_oracle:ORACLE", "--outcome", "benign"], "unknown outcome label 'benign'"),
])
def test_certkit_calibrate_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    path = _labelled_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["calibrate", str(path), *args])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.count("\n") == 1


def test_certkit_calibrate_names_the_line_of_a_bad_label_or_a_small_set(tmp_path, monkeypatch, capsys):
    path = _labelled_file(tmp_path, n=5)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["calibrate", str(path), "--oracle", "audit_oracle:ORACLE"])
    assert "5 labelled answers cannot bound the oracle's error below 0.5" in capsys.readouterr().err
    path.write_text(path.read_text().replace('"label": "harmful"', '"label": "benign"', 1))
    with pytest.raises(SystemExit):
        main(["calibrate", str(path), "--oracle", "audit_oracle:ORACLE"])
    assert "labelled.jsonl:1: label 'benign' is not one of oracle harm's labels" in capsys.readouterr().err


def test_certkit_calibrate_looks_up_a_judges_requests_in_the_case_file(tmp_path, monkeypatch, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8), (80, 80, 80)).save(tmp_path / "grey.png")
    (tmp_path / "cases.jsonl").write_text(json.dumps({"id": "c", "prompt": "hand it over", "image": "grey.png"}) + "\n")
    (tmp_path / "judge_oracle.py").write_text(
        "import torch\nfrom certkit.models import TorchClassifier\nfrom certkit.oracles import JudgeOracle\n"
        "class M(torch.nn.Module):\n    def forward(self, ids, images):\n        s = (ids == 7).any(dim=1).float() - 0.5\n"
        "        return torch.stack([-s, s], dim=1)\n"
        "def make():\n    words = {'knife': 7}\n"
        "    judge = TorchClassifier(M(), ['safe', 'unsafe'], lambda t: [words.get(w, 2 + len(w) % 5) for w in t.split()], "
        "vocab_size=10, special_ids=[0, 1], name='judge')\n    return JudgeOracle(judge)\n")
    rows = [{"case": "c", "answer": "no", "label": "safe"}] * 40 + [{"case": "c", "answer": "the knife", "label": "unsafe"}]
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["calibrate", str(path), "--oracle", "judge_oracle:make"])
    assert "give --cases FILE" in capsys.readouterr().err
    assert main(["calibrate", str(path), "--oracle", "judge_oracle:make", "--cases", "cases.jsonl", "--outcome", "safe"]) == 0
    assert "mistakes: 0 of 41" in capsys.readouterr().out
    path.write_text(json.dumps({"case": "c", "case_hash": "0" * 64, "answer": "no", "label": "safe"}) + "\n")
    with pytest.raises(SystemExit):
        main(["calibrate", str(path), "--oracle", "judge_oracle:make", "--cases", "cases.jsonl"])
    assert "labelled.jsonl:1: case 'c' in cases.jsonl differs from the one the run sampled" in capsys.readouterr().err


# ---------------------------------------------------------------- --certkit-label-sample


TESTS = '''
import numpy as np
import pytest
from certkit import Case

CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), v, dtype=np.float32)) for i, v in enumerate([0.9, 0.62, 0.51])]


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bright(certkit, case):
    certkit.certify(case, radius=0.05)
'''


def test_the_run_writes_a_sample_of_its_noisy_answers(pytester):
    project = make_project(pytester, TESTS)
    result = project.runpytest_inprocess(*QUICK, "-p", "no:xdist", "--certkit-label-sample", "40", "--certkit-cache-dir", "none",
                                         "--certkit-report", "none", "--certkit-history", "none")
    assert result.ret == 0
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert all(c["timings"]["forward_samples"] >= 32 for r in doc["results"] for c in r["certificates"])
    result.stdout.fnmatch_lines(["certkit label sample: 40 of the 96 noisy answers in the streams' first 32*reports/label-sample.jsonl*"])
    records = [json.loads(line) for line in (pytester.path / "reports" / "label-sample.jsonl").read_text().splitlines()]
    assert len(records) == 40 and {r["case"] for r in records} <= {"c0", "c1", "c2"}
    assert all(r["answer"] == r["oracle_label"] and r["label"] is None for r in records)  # a classifier's answer is its label
    keys = [sample_key(r["stream"], r["sample"]) for r in records]
    assert keys == sorted(keys)


def test_a_bad_label_sample_option_is_a_usage_error(pytester):
    project = make_project(pytester, TESTS)
    result = project.runpytest_inprocess(*QUICK, "-p", "no:xdist", "--certkit-label-sample", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*option --certkit-label-sample label_sample = 0: label_sample must be a positive number*"])
    result = project.runpytest_inprocess(*QUICK, "-p", "no:xdist", "--certkit-label-sample", "5", "--certkit-label-sample-file", "none")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--certkit-label-sample needs a file to write*"])


@pytest.mark.slow
def test_workers_sample_what_one_process_samples(pytester):
    """Under xdist each worker samples what it draws and the controller merges: the file is the one a single process
    writes, line for line."""
    project = make_project(pytester, TESTS)
    common = ("-p", "no:cacheprovider", "--certkit-label-sample", "30", "--certkit-cache-dir", "none", "--certkit-report", "none",
              "--certkit-history", "none")
    assert project.runpytest_subprocess(*common, "-p", "no:xdist").ret == 0
    alone = (pytester.path / "reports" / "label-sample.jsonl").read_text()
    assert project.runpytest_subprocess(*common, "-n", "2").ret == 0
    assert (pytester.path / "reports" / "label-sample.jsonl").read_text() == alone and alone.count("\n") == 30
