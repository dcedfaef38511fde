"""Oracles: declared labels, unparseable outputs, fingerprints, the real MiniLM semantic oracle."""

import pytest

from certkit.oracles import UNPARSEABLE, ActionOracle, ClassifierOracle, KeywordOracle, LabelOracle, OracleError, SemanticOracle


def test_refusal_detector():
    oracle = KeywordOracle.refusal()
    out = oracle(["I cannot help with that.", "Sure, here is how to pick up the cube.", "Sorry, that is unsafe.", "", "I won't do it"])
    assert out == ["refused", "complied", "refused", UNPARSEABLE, "refused"]


def test_keyword_rules_first_match_and_no_default():
    oracle = KeywordOracle({"harmful": [r"\bknife\b", r"\bthrow\b"], "harmless": [r"\bcube\b"]}, name="harm")
    assert oracle(["throw the cube", "pick the cube", "hello"]) == ["harmful", "harmless", UNPARSEABLE]
    with pytest.raises(OracleError, match="invalid regular expression"):
        KeywordOracle({"x": ["("]})


def test_action_parser():
    oracle = ActionOracle({"pick_up": ["pick up", "grab"], "place": ["put down"], "hand_over": ["hand over", "give"],
                           "refuse": ["cannot", "refuse"]})
    said = ["Grab the cup.", "I will put down the cup", "give it to the person", "I cannot do that"]
    assert oracle(said) == ["pick_up", "place", "hand_over", "refuse"]
    assert oracle(["dance", "", "pick up and give"]) == [UNPARSEABLE, UNPARSEABLE, UNPARSEABLE]  # none, empty, ambiguous
    assert oracle(["pickup"]) == [UNPARSEABLE]  # whole words only


def test_a_phrase_inside_a_longer_phrase_of_another_action_belongs_to_the_longer_one():
    oracle = ActionOracle({"put": ["put"], "put_away": ["put away"], "throw": ["throw"]})
    assert oracle(["I will put away the knife", "Put it on the table", "PUT AWAY."]) == ["put_away", "put", "put_away"]
    assert oracle(["put it down, then put away the cup", "put away the cup and throw the ball"]) == [UNPARSEABLE, UNPARSEABLE]
    assert oracle(["put away the cup, then put away the ball"]) == ["put_away"]
    assert ActionOracle(["put", "put away"]).config()["rule"] == ActionOracle.RULE  # the rule is part of the fingerprint


def test_fingerprints_change_with_behaviour():
    a = KeywordOracle({"x": ["a"]}, default="y")
    assert a.fingerprint == KeywordOracle({"x": ["a"]}, default="y").fingerprint
    assert a.fingerprint != KeywordOracle({"x": ["b"]}, default="y").fingerprint
    assert a.fingerprint != KeywordOracle({"x": ["a"]}, default="y", version="2").fingerprint
    assert ActionOracle(["go"]).fingerprint != ActionOracle(["go"], error=0.01).fingerprint


def test_declared_error_and_labels_are_validated():
    with pytest.raises(OracleError, match="error"):
        LabelOracle(["a", "b"], error=1.0)
    with pytest.raises(OracleError, match="distinct"):
        LabelOracle(["a", "a"])
    for nothing in ([], [UNPARSEABLE]):  # unparseable is always a label, so it names no outcome to certify
        with pytest.raises(OracleError, match="name at least one outcome besides 'unparseable'"):
            LabelOracle(nothing)
    with pytest.raises(OracleError, match="returned 1 labels for 2 outputs"):
        ClassifierOracle(lambda outs: ["a"], ["a"], name="short")(["x", "y"])
    with pytest.raises(OracleError, match="unknown outcome"):
        LabelOracle(["a", "b"]).check_outcome("c")


@pytest.fixture(scope="module")
def semantic():
    return SemanticOracle("Pick up the red cube.", threshold=0.8)


def test_semantic_oracle_with_real_minilm(semantic):
    sims = semantic.similarity(["Pick up the red cube.", "Grab the red cube.", "The weather is nice today."])
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert sims[1] > 0.8 > sims[2]
    assert semantic(["Pick up the red cube!", "The weather is nice today.", " "]) == ["equivalent", "different", UNPARSEABLE]


def test_semantic_oracle_bad_settings():
    with pytest.raises(OracleError, match="reference"):
        SemanticOracle("  ")
    with pytest.raises(OracleError, match="threshold"):
        SemanticOracle("x", threshold=1.5)


class _Recorder:
    """A judge: 'unsafe' iff the conversation holds the word "knife" (token 7); records every image it is shown."""

    def __init__(self):
        import torch

        from certkit.models import TorchClassifier

        self.seen = []
        recorder = self

        class Module(torch.nn.Module):
            def forward(self, ids, images):
                recorder.seen.append(images.clone())
                s = (ids == 7).any(dim=1).float() - 0.5
                return torch.stack([-s, s], dim=1)

        words = {"knife": 7}
        self.adapter = TorchClassifier(Module(), ["safe", "unsafe"], lambda t: [words.get(w, 2 + len(w) % 5) for w in t.split()],
                                       vocab_size=10, special_ids=[0, 1], batch_size=8, name="recorder")


def test_judge_oracle_reads_the_clean_request_with_each_answer():
    import numpy as np
    import torch

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian
    from certkit.oracles import JudgeOracle

    judge = _Recorder()
    oracle = JudgeOracle(judge.adapter, template="{prompt} ANSWER {answer}")
    case = Case("j", "hand it over", np.full((3, 8, 8), 0.4, dtype=np.float32))
    assert oracle(["here is the knife", "no", "no"], request=case) == ["unsafe", "safe", "safe"]
    assert len(judge.seen) == 2  # identical answers are judged once
    with pytest.raises(OracleError, match="request=case"):
        oracle(["x"])
    # through Smoothed: the answers come from a noisy model, the judge always sees the clean image
    answers = TorchClassifier(torch.nn.Identity(), ["a", "b"], lambda t: [2], vocab_size=4)

    class Answerer:
        fingerprint, output_kind, device, batch_size, mask_id = "answerer", "text", torch.device("cpu"), 16, None
        alphabet = torch.arange(2, 6)
        encode = answers.encode

        def run(self, ids, images, seed):
            return ["the knife" if float(img.mean()) > 0.4 else "no" for img in images]

    cert = Smoothed(Answerer(), oracle, image=Gaussian(0.1), seed=0).certify(case, radius=0.01, outcome="safe", n_max=64)
    assert set(cert.label_counts) == {"safe", "unsafe"}
    assert all(torch.equal(img, torch.tensor(case.image, device=img.device).unsqueeze(0)) for img in judge.seen)  # on the judge's device
    assert JudgeOracle(judge.adapter, template="{answer}").fingerprint != oracle.fingerprint


def test_judge_oracle_refuses_a_generator_or_a_template_without_the_answer():
    from certkit.oracles import JudgeOracle

    with pytest.raises(OracleError, match="outputs labels"):
        JudgeOracle(object())
    with pytest.raises(OracleError, match="answer"):
        JudgeOracle(_Recorder().adapter, template="{prompt}")


def test_every_oracle_takes_a_measured_error_bound():
    """``error=`` takes a measured OracleErrorBound as well as a number: its upper bound is the error subtracted, the
    bound is kept (certificates record it) and the fingerprint changes with it; the refusal names both forms."""
    from certkit.oracles import JudgeOracle, OracleErrorBound
    from certkit.stats import clopper_pearson

    makers = {
        "label": lambda e: LabelOracle(["a", "b"], error=e),
        "keyword": lambda e: KeywordOracle({"a": ["x"]}, default="b", error=e),
        "refusal": lambda e: KeywordOracle.refusal(error=e),
        "action": lambda e: ActionOracle(["a", "b"], error=e),
        "classifier": lambda e: ClassifierOracle(lambda outs: ["a"] * len(outs), ["a", "b"], name="c", error=e),
        "judge": lambda e: JudgeOracle(_Recorder().adapter, error=e),
    }
    upper = clopper_pearson(1, 500, 0.01)[1]
    for name, make in makers.items():
        plain = make(0.0)
        bound = OracleErrorBound(upper=upper, mistakes=1, n=500, alpha=0.01, digest="sha256:" + "ab" * 32, kind="disagreement",
                                 oracle=plain.behaviour)
        measured = make(bound)
        assert measured.error == upper and measured.calibration is bound, name
        assert measured.check_outcome(plain.labels[0]) == plain.labels[0]
        assert measured.fingerprint not in (plain.fingerprint, make(upper).fingerprint) and measured.behaviour == plain.behaviour
        assert plain.calibration is None
    with pytest.raises(OracleError, match=r"error must be a fraction in \[0, 1\) or a certkit.oracles.OracleErrorBound"):
        LabelOracle(["a", "b"], error="0.02")
