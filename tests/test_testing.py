"""certkit.testing: the tiny-LLaVA builder is deterministic for a seed, differs across seeds, and saves a folder
VisionLanguageModel loads and certifies, as the module's smoke-audit example promises."""

import numpy as np
import torch

from certkit import Case, Smoothed
from certkit.models import VisionLanguageModel
from certkit.noise import Gaussian
from certkit.oracles import KeywordOracle
from certkit.testing import save_tiny_llava, tiny_llava


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
