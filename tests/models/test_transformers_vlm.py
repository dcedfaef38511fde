"""The transformers adapter (certkit/models/transformers_vlm.py) on a tiny LLaVA through from_pretrained: the prompt
positions, a certificate end to end, the fingerprint (weights, processor, template, tokenizer; not the folder),
contexts and loading errors. Every family through the same adapter is tests/models/test_families.py."""

import numpy as np
import pytest

from certkit import Case, Smoothed
from certkit.models import ModelError, VisionLanguageGenerator
from certkit.noise import Gaussian, UniformReplace
from certkit.oracles import ActionOracle, ClassifierOracle
from certkit.testing import save_tiny_llava


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="module")
def llava(llava_dir):
    return VisionLanguageGenerator.from_pretrained(llava_dir, max_new_tokens=4, batch_size=32)


def test_llava_prompt_positions_are_exactly_the_user_prompt(llava):
    c = Case("p", "pick up the red cube", np.random.default_rng(0).random((3, 32, 32), dtype=np.float32))
    enc = llava.encode(c)
    tok = llava.tokenizer
    assert tok.decode(enc.ids[enc.editable].tolist()).strip() == "pick up the red cube"
    assert (enc.ids == llava.model.config.image_token_id).sum() == 16  # 4x4 patches (the default strategy drops CLS)
    assert not enc.editable[enc.ids == llava.model.config.image_token_id].any()


@pytest.mark.parametrize("prompt", ["Write a caption for this image", "Décrivez l'image, s'il vous plaît — en 3 phrases 🙂",
                                    "  tabs\tand\nnewlines, UPPER case & symbols: {x} <y> 100%  "])
def test_llava_reads_any_prompt_and_locates_all_of_it(llava, prompt):
    """The tiny model's byte-level tokenizer spells any text, and the editable tokens are the whole prompt: a
    character spelled with several byte tokens (é, —, the emoji) is located once, not once per token. (A space
    before a character the merges do not join to it is a token with no characters, not editable, as with published
    byte-level tokenizers.)"""
    enc = llava.encode(Case("any", prompt, np.full((3, 32, 32), 0.5, dtype=np.float32)))
    assert "".join(llava.tokenizer.decode(enc.ids[enc.editable].tolist()).split()) == "".join(prompt.split())


def test_llava_certified_end_to_end(llava):
    answered = ClassifierOracle(lambda outs: ["answered" if o.strip() else "silent" for o in outs], ["answered", "silent"], name="answered")
    smoothed = Smoothed(llava, answered, image=Gaussian(0.25), text=UniformReplace(0.25, llava.alphabet.numel()), seed=1)
    c = Case("e2e", "pick up the red cube", np.full((3, 32, 32), 0.5, dtype=np.float32))
    cert = smoothed.certify(c, radius=0.1, edits=1, outcome="answered", alpha=0.01, threshold=4.6e-5, n_max=2_000)
    assert cert.certified and cert.n < 2_000
    assert cert.p_a_lower > cert.p_star and cert.p_adv >= 4.6e-5
    assert cert.model_fingerprint == llava.fingerprint
    # an outcome that never occurs is rejected early too
    never = smoothed.certify(c, radius=0.1, edits=1, outcome="silent", alpha=0.01, threshold=4.6e-5, n_max=2_000)
    assert never.status == "not certified" and never.n < 2_000
    # the action oracle reads the generated words
    actions = Smoothed(llava, ActionOracle(["pick up", "place", "hand over"]), image=Gaussian(0.25), seed=1)
    fr = actions.frontier(c, max_edits=0, outcome="pick up", n=64, alpha=0.01)
    assert fr.n == 64 and sum(fr.label_counts.values()) == 64


def test_llava_fingerprint_follows_the_weights(llava_dir, tmp_path):
    a = VisionLanguageGenerator.from_pretrained(llava_dir, max_new_tokens=4)
    b = VisionLanguageGenerator.from_pretrained(save_tiny_llava(tmp_path / "other", seed=1), max_new_tokens=4)
    c = VisionLanguageGenerator.from_pretrained(llava_dir, max_new_tokens=5)
    assert a.fingerprint != b.fingerprint and a.fingerprint != c.fingerprint
    assert a.fingerprint == VisionLanguageGenerator.from_pretrained(llava_dir, max_new_tokens=4).fingerprint


def test_llava_fingerprint_does_not_depend_on_the_folder_it_was_loaded_from(llava_dir, tmp_path):
    """The same files in another checkout or on another node are the same model: one cache key, mergeable shards."""
    import shutil

    copy = shutil.copytree(llava_dir, tmp_path / "elsewhere" / "llava")
    a = VisionLanguageGenerator.from_pretrained(llava_dir, max_new_tokens=4)
    assert VisionLanguageGenerator.from_pretrained(str(copy), max_new_tokens=4).fingerprint == a.fingerprint


def test_llava_rejects_prompts_longer_than_its_context(llava_dir):
    model = VisionLanguageGenerator.from_pretrained(llava_dir, max_new_tokens=4)
    long = Case("long", " ".join(["cube"] * 1100), np.zeros((3, 32, 32), dtype=np.float32))
    with pytest.raises(ModelError, match="too long.*context of 1024"):
        model.encode(long)


def test_llava_loading_errors(tmp_path):
    with pytest.raises(ModelError, match="not a directory"):
        VisionLanguageGenerator.from_pretrained(tmp_path / "missing")
    with pytest.raises(ModelError, match="no config.json"):
        VisionLanguageGenerator.from_pretrained(tmp_path)
    with pytest.raises(ModelError, match="dtype"):
        (tmp_path / "config.json").write_text("{}")
        VisionLanguageGenerator.from_pretrained(tmp_path, dtype="float7")


def test_a_vlm_fingerprint_covers_processor_template_and_tokenizer(tmp_path):
    from transformers import AutoProcessor

    from certkit.models import VisionLanguageModel
    from certkit.testing import save_tiny_llava

    directory = save_tiny_llava(tmp_path / "llava")
    base = VisionLanguageModel.from_pretrained(directory)

    def variant(change):
        processor = AutoProcessor.from_pretrained(directory)
        change(processor)
        return VisionLanguageModel(base.model, processor, weights_fingerprint=base.weights_fingerprint).fingerprint

    assert variant(lambda p: None) == base.fingerprint
    assert variant(lambda p: setattr(p.image_processor, "image_mean", [0.4, 0.4, 0.4])) != base.fingerprint
    assert variant(lambda p: setattr(p, "chat_template", p.chat_template + " ")) != base.fingerprint
    assert variant(lambda p: p.tokenizer.add_tokens(["zebra"])) != base.fingerprint
    assert VisionLanguageModel(base.model, AutoProcessor.from_pretrained(directory), weights_fingerprint=base.weights_fingerprint,
                               system_prompt="be careful").fingerprint != base.fingerprint


def test_certkits_own_loads_draw_no_progress_bars(tmp_path, capfd):
    """Saving the tiny model, loading any model through certkit and the semantic oracle's sentence model print no
    "Writing model shards" / "Loading weights" bars into the test output; transformers' switch is back on afterwards."""
    from transformers.utils import logging as hf_logging

    from certkit.oracles import SemanticOracle

    assert hf_logging.is_progress_bar_enabled()
    VisionLanguageGenerator.from_pretrained(save_tiny_llava(tmp_path / "llava"), max_new_tokens=4)
    SemanticOracle("pick up the cube")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err, err
    assert hf_logging.is_progress_bar_enabled()
