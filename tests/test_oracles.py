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
    oracle = ActionOracle({"pick_up": ["pick up", "grab"], "place": ["put down"], "hand_over": ["hand over", "give"], "refuse": ["cannot", "refuse"]})
    assert oracle(["Grab the cup.", "I will put down the cup", "give it to the person", "I cannot do that"]) == ["pick_up", "place", "hand_over", "refuse"]
    assert oracle(["dance", "", "pick up and give"]) == [UNPARSEABLE, UNPARSEABLE, UNPARSEABLE]  # none, empty, ambiguous
    assert oracle(["pickup"]) == [UNPARSEABLE]  # whole words only


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
