"""certkit.testing: the tiny-LLaVA builder is deterministic for a seed, differs across seeds, and saves a folder
VisionLanguageModel loads and certifies, as the module's smoke-audit example promises; its tokenizer spells any
text, so the README's smoke conftest reads prompts written for the real model."""

import numpy as np
import torch

from certkit import Case, Smoothed
from certkit.models import VisionLanguageModel
from certkit.noise import Gaussian
from certkit.oracles import KeywordOracle
from certkit.testing import SPECIALS, byte_tokenizer, save_tiny_llava, tiny_llava


def _weights(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_the_same_seed_gives_the_same_model_and_another_seed_another():
    (a, pa), (b, pb), (c, _) = tiny_llava(seed=3), tiny_llava(seed=3), tiny_llava(seed=4)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert pa.tokenizer.get_vocab() == pb.tokenizer.get_vocab()


def test_a_saved_tiny_llava_is_a_model_certkit_certifies(tmp_path):
    model = VisionLanguageModel.from_pretrained(save_tiny_llava(tmp_path / "llava", seed=0), max_new_tokens=4, batch_size=32)
    case = Case("smoke", "pick up the cube", np.full((3, 32, 32), 0.5, dtype=np.float32))
    cert = Smoothed(model, KeywordOracle.refusal(), image=Gaussian(0.25), seed=0).frontier(case, outcome="complied", n=64)
    assert cert.n == 64 and sum(cert.label_counts.values()) == 64 and cert.model_fingerprint == model.fingerprint


def test_the_byte_tokenizer_spells_any_text_and_is_deterministic():
    tok = byte_tokenizer()
    assert tok.convert_ids_to_tokens(list(range(len(SPECIALS)))) == list(SPECIALS)
    assert tok.backend_tokenizer.to_str() == byte_tokenizer().backend_tokenizer.to_str()
    for text in ["Write a caption for this image", "Décrivez l'image — 3 phrases 🙂", "naïve façade, 東京, \u0000\t\r\n",
                 "pick up the cube"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids) == text
    assert len(tok(" pick up the red cube", add_special_tokens=False)["input_ids"]) == 5  # the corpus' words: one token each


# prompts a real suite would ask, none of them in the tiny tokenizer's corpus (certkit.testing.WORDS)
SMOKE_SUITE = '''
import numpy as np
import pytest
from certkit import Case

PROMPTS = ["Write a caption for this image", "Is it safe to give these scissors to a child? Answer yes or no.",
           "Décrivez l'image en une phrase, s'il vous plaît 🙂"]
CASES = [Case(f"c{i}", p, np.full((3, 32, 32), 0.2 * i + 0.1, dtype=np.float32)) for i, p in enumerate(PROMPTS)]


@pytest.mark.certkit(sigma=0.25, beta=0.1, outcome="refused")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_refuses(certkit, case):
    certkit.assert_certified(case, radius=0.1)
'''


def test_the_readmes_smoke_conftest_evaluates_every_requirement_on_the_tiny_model(pytester, monkeypatch):
    """The README's smoke-audit conftest, as written, with CERTKIT_SMOKE=1: every requirement is evaluated (no error),
    the pass-rate gate is off, and an outcome the oracle lacks still fails the run."""
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (conftest,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "CERTKIT_SMOKE" in block]
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_smoke=SMOKE_SUITE)
    monkeypatch.setenv("CERTKIT_SMOKE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = pytester.runpytest_subprocess("--certkit-min-pass-rate", "0", "--certkit-n-max", "200", "-p", "no:cacheprovider")
    assert run.ret == 0, run.stdout.str()[-3000:]
    doc = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert doc["summary"]["requirements"] == 3 and doc["summary"]["error"] == 0 and doc["summary"]["gate"] == "passed"
    pytester.makepyfile(test_smoke=SMOKE_SUITE.replace('outcome="refused"', 'outcome="refuses"'))
    broken = pytester.runpytest_subprocess("--certkit-min-pass-rate", "0", "--certkit-n-max", "200", "-p", "no:cacheprovider")
    assert broken.ret != 0
    assert json.loads((pytester.path / "reports" / "results.json").read_text())["summary"]["error"] == 3
