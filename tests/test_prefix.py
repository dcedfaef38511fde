"""Early stopping (issue 30.2): an oracle's prefix decision is the label of every continuation, the settled text of
a generation is a prefix of every longer generation's decode, and a sample stopped early gets the label of its full
answer, in the adapter and in certificates (certkit/oracles.py decide_prefix, certkit/models/settled.py,
certkit/models/transformers_vlm.py, certkit/smoothing.py)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certkit import Case, Smoothed
from certkit.models import VisionLanguageModel
from certkit.models.settled import settled_text
from certkit.noise import Gaussian
from certkit.oracles import ActionOracle, KeywordOracle, right_context
from certkit.testing import byte_tokenizer, tiny_llava, word_tokenizer

# ------------------------------------------------------------------ oracles

ORACLES = {
    "refusal": KeywordOracle.refusal(),
    "anchors": KeywordOracle({"stop": [r"\bno\b", r"done$", r"(?m)^ok$", r"(?<!n)ot\Z", r"(?<=I )can", r"x\B", r"(a|bb)+c"],
                              "other": [r"o"]}, default="rest"),
    "no default": KeywordOracle({"yes": [r"\byes\b"]}),
    "unanalysable": KeywordOracle({"stop": [r"no(?=t)", r"(?>a|ab)c"]}, default="rest"),
}
#: pieces that complete or spoil the patterns' matches when joined (a random character rarely does)
PIECES = ["I", " ", "refuse", "d", "can", "no", "t", "ok", "\n", "done", "x", "bb", "a", "c", "yes", "s", ".", "'", "sorry"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


@settings(max_examples=600, deadline=None)
@given(name=st.sampled_from(sorted(ORACLES)), prefix=TEXT, rest=TEXT)
def test_a_prefix_decision_is_the_label_of_every_continuation(name, prefix, rest):
    oracle = ORACLES[name]
    decided = oracle.decide_prefix(prefix)
    if decided is not None:
        assert oracle([prefix + rest]) == [decided]
        assert oracle([prefix]) == [decided]


def test_a_match_at_the_end_of_the_prefix_is_not_yet_final():
    """The previous engineer's counterexample: ``\\brefuse\\b`` matches "I refuse" but not "I refused"."""
    refusal = ORACLES["refusal"]
    assert refusal.decide_prefix("I refuse") is None and refusal(["I refused it"]) == ["complied"]
    assert refusal.decide_prefix("I refuse ") == "refused"
    anchors = ORACLES["anchors"]
    assert anchors.decide_prefix("done\n") is None and anchors(["done\nx"]) == ["other"]  # $ before a final newline
    assert anchors.decide_prefix("all done\n ") is None  # `done$` is never final: it needs the end of the answer
    assert anchors.decide_prefix("ok\n") is None and anchors.decide_prefix("ok\nx") == "stop"  # multiline $: a newline after it
    assert anchors.decide_prefix("so, no.") == "stop" and anchors.decide_prefix("o o") is None  # a later rule: never decided
    assert ORACLES["unanalysable"].decide_prefix("not at all, abc") is None
    assert anchors.decide_prefix("   ") is None  # blank so far: the empty answer is unparseable


@pytest.mark.parametrize("pattern, context", [
    (r"\brefuse\b", 1), (r"abc", 0), (r"a$", 2), (r"(?m)a$", 2), (r"a\Z", 1), (r"^a|\Aa", 0), (r"(?<=y)a\b", 1),
    (r"(?<!\bx)a", 1), (r"(a)\1", 0), (r"a*?b{2,}", 0),
    (r"(?=x)a", None), (r"a(?!b)", None), (r"(?>a)", None), (r"a++", None), (r"(a)(?(1)b|c)", None), (r"[", None),
])
def test_right_context_bounds_what_a_match_reads_past_its_end(pattern, context):
    assert right_context(pattern) == context


def test_only_oracles_with_a_proof_declare_prefix_decisions():
    assert ORACLES["refusal"].decides_prefixes and not ORACLES["unanalysable"].decides_prefixes
    action = ActionOracle(["pick up", "place"])
    assert not action.decides_prefixes and action.decide_prefix("pick up and place it") is None


# ------------------------------------------------------------------ settled text


def _llama_like(cleanup: bool = False):
    """A SentencePiece-shaped fast tokenizer as LLaVA-1.5's: Metaspace pieces, byte fallback, then Fuse and a left Strip."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in ["\u2581I", "\u2581refuse", "d", "\u2581can", "n't", "\u2581.", ".", "\u2581", "'", "\u2581'", "t", "\u2581n"]:
        vocab[piece] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>"))
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   clean_up_tokenization_spaces=cleanup)


def _cleaning_words():
    tok = word_tokenizer(["do", "n't", ".", "'", "'s", "it", "?", "re", "'re"], train=False, split_punctuation=False)
    tok.clean_up_tokenization_spaces = True
    return tok


TOKENIZERS = {"byte-level": byte_tokenizer, "llama-like": _llama_like, "words, cleaned up": _cleaning_words}
_BUILT = {}


def _tokenizer(name):
    if name not in _BUILT:
        _BUILT[name] = TOKENIZERS[name]()
    return _BUILT[name]


def _interesting_ids(tok):
    """Ids that stress the decoders: the specials, the bytes of multi-byte characters, pieces and words."""
    ids = list(range(min(len(tok), 24)))
    for text in ["’é🙂", " n't", " 're", " .", "I refuse"]:
        ids += tok(text, add_special_tokens=False)["input_ids"]
    ids += [i for t, i in tok.get_vocab().items() if t.startswith("<0x") and t[3:5] in ("E2", "80", "99", "F0", "9F", "41")]
    return sorted(set(ids))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(TOKENIZERS)), data=st.data())
def test_the_settled_text_is_a_prefix_of_every_longer_decode(name, data):
    tok = _tokenizer(name)
    settled = settled_text(tok)
    assert settled is not None
    ids = data.draw(st.lists(st.sampled_from(_interesting_ids(tok)), max_size=16))
    full = tok.decode(ids, skip_special_tokens=True)
    for k in range(len(ids) + 1):
        assert full.startswith(settled(ids[:k]))


def test_a_plain_decode_of_a_prefix_is_not_a_prefix_and_the_settled_text_is():
    """Why the adapter decides on the settled text: byte fallback and clean-up rewrite the end of a decoded prefix."""
    tok = _llama_like()
    vocab = tok.get_vocab()
    ids = [vocab["\u2581I"], vocab["<0xE2>"], vocab["<0x80>"], vocab["<0x99>"]]  # "I’": the apostrophe is three byte tokens
    assert not tok.decode(ids).startswith(tok.decode(ids[:-1]))
    assert tok.decode(ids).startswith(settled_text(tok)(ids[:-1])) and settled_text(tok)(ids[:-1]) == "I"
    words = _cleaning_words()
    ids = words("do n't", add_special_tokens=False)["input_ids"]
    assert words.decode(ids) == "don't" and not words.decode(ids).startswith(words.decode(ids[:1]) + " ")
    assert settled_text(words).tail == 30 and settled_text(_llama_like()).tail == 0 and settled_text(byte_tokenizer()).tail == 3


def test_a_tokenizer_without_a_proof_never_stops_early():
    from tokenizers import decoders

    tok = word_tokenizer(["a", "b"], train=False)
    tok.backend_tokenizer.decoder = decoders.WordPiece()
    assert settled_text(tok) is None
    tok.backend_tokenizer.decoder = decoders.Sequence([decoders.Fuse(), decoders.Replace("a", "b")])  # a replace over the whole text
    assert settled_text(tok) is None


# ------------------------------------------------------------------ generation and certificates

HIT = KeywordOracle({"hit": [r"\b\w{4}\b"]}, default="miss", name="four-letter-word")


@pytest.fixture(scope="module")
def case():
    return Case("c", "pick up the red cube", np.full((3, 32, 32), 0.5, dtype=np.float32))


@pytest.mark.parametrize("do_sample", [False, True])
def test_samples_stopped_early_have_the_labels_of_their_full_answers(case, do_sample):
    model, processor = tiny_llava(seed=0)
    adapter = VisionLanguageModel(model, processor, max_new_tokens=24, batch_size=16, do_sample=do_sample)
    enc = adapter.encode(case)
    ids = enc.ids.unsqueeze(0).expand(16, -1).clone()
    images = enc.image.unsqueeze(0) + 0.3 * torch.randn(16, *enc.image.shape, generator=torch.Generator().manual_seed(0))
    full = adapter.run(ids, images, 7, encoded=enc)
    full_tokens = adapter.generated_tokens
    short = adapter.run(ids, images, 7, encoded=enc, decide=HIT.decide_prefix)
    short_tokens = adapter.generated_tokens - full_tokens
    assert HIT(short) == HIT(full) and "hit" in HIT(full) and "miss" in HIT(full)
    assert short_tokens < full_tokens <= 16 * 24
    for f, s in zip(full, short):  # a stopped answer is the full one cut short (the same tokens, fewer of them)
        assert f.startswith(settled_text(adapter.tokenizer)(adapter.tokenizer(s, add_special_tokens=False)["input_ids"]))
        assert len(s) <= len(f)


def test_certificates_with_and_without_early_stopping_are_the_same_but_for_timings(case, monkeypatch):
    model, processor = tiny_llava(seed=0)
    adapter = VisionLanguageModel(model, processor, max_new_tokens=16, batch_size=32)
    docs, tokens = [], []
    for early in (True, False):
        smoothed = Smoothed(adapter, HIT, image=Gaussian(0.5), seed=3, early_stop=early)
        assert smoothed.early_stop is early
        cert = smoothed.frontier(case, max_edits=0, outcome="hit", n=64)
        doc = cert.to_dict()
        tokens.append(doc.pop("timings")["generated_tokens"])
        docs.append(doc)
    assert docs[0] == docs[1] and 0 < tokens[0] < tokens[1] <= 64 * 16
    # people label whole answers: while an answer sink collects them, no sample stops early
    offered = []
    sampling = Smoothed(adapter, HIT, image=Gaussian(0.5), seed=3, early_stop=True)
    sampling.answer_sink = lambda **batch: offered.extend(batch["outputs"])
    cert = sampling.frontier(case, max_edits=0, outcome="hit", n=64)
    assert cert.timings["generated_tokens"] == tokens[1] and len(offered) == 64
    monkeypatch.setenv("CERTKIT_EARLY_STOP", "0")
    assert not Smoothed(adapter, HIT).early_stop
    monkeypatch.delenv("CERTKIT_EARLY_STOP")
    assert Smoothed(adapter, HIT).early_stop and not Smoothed(adapter, ActionOracle(["pick up"])).early_stop


def test_the_prefix_bench_runs_small_and_checks_exactness():
    """bench_prefix's code path on a few samples: both arms counted n forward passes and the same labels (it exits
    otherwise), and stopping early generated fewer tokens where the model refuses."""
    from bench import bench_prefix

    res = bench_prefix.main(["--n", "32", "--repeats", "1", "--new-tokens", "12", "--batch", "32"])
    refusing = res["refusing"]
    assert refusing["on"][0]["counts"] == refusing["off"][0]["counts"]
    assert refusing["on"][0]["tokens"] < refusing["off"][0]["tokens"] and refusing["on"][0]["computed"] <= refusing["off"][0]["computed"]
