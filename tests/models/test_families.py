"""The family matrix: every major VLM family through the one generic adapter, on tiny random checkpoints built
from each family's config with its real processor class (certkit.testing.families).

For each family: the adapter's token ids are the processor's own, the located prompt decodes to the prompt, at
zero noise its greedy answers equal plain transformers' ``generate`` on the processor's inputs, and certify and
frontier run through the pytest plugin. Models run on the suite's device (tests/conftest.py: CERTKIT_TEST_DEVICE), and
every reference path (plain transformers, ShieldGemma 2's classifier) runs on the adapter's device, so answers are
compared on one device. Families whose processors need torchvision run where torchvision
imports (CI runs them in a second environment, ``make test-families``); elsewhere they skip, unless
``CERTKIT_REQUIRE_TORCHVISION=1`` makes a missing torchvision an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from certkit import Case, Smoothed
from certkit.models import VisionLanguageModel
from certkit.noise import Gaussian, UniformReplace
from certkit.oracles import KeywordOracle
from certkit.testing import families as F
from certkit.testing.families import CPU_FAMILIES, TORCHVISION_FAMILIES
from certkit.testing.families import torchvision_ok as _torchvision_ok
from certkit.testing.families.gemma import build_shieldgemma2

PROMPT = "pick up the red cube please"


def _checkpoint(name, tmp_path_factory):
    if name in TORCHVISION_FAMILIES and not _torchvision_ok():
        if os.environ.get("CERTKIT_REQUIRE_TORCHVISION") == "1":
            pytest.fail(f"{name}: torchvision does not import here, and CERTKIT_REQUIRE_TORCHVISION=1")
        pytest.skip(f"{name}'s processor needs torchvision; `make test-families` runs it in an environment that has it")
    directory = tmp_path_factory.mktemp(name)
    F.build(name, directory)
    return directory


@pytest.fixture(scope="module", params=CPU_FAMILIES + TORCHVISION_FAMILIES)
def family(request, tmp_path_factory):
    name = request.param
    directory = _checkpoint(name, tmp_path_factory)
    adapter = VisionLanguageModel.from_pretrained(directory, max_new_tokens=3, batch_size=8, **F.SETTINGS.get(name, {}))
    return name, directory, adapter


def _image(h=40, w=56, seed=0):
    """A random image whose pixels are exact 8-bit values, so float and 8-bit processor paths see the same image."""
    return (np.random.default_rng(seed).integers(0, 256, (3, h, w)) / 255.0).astype(np.float32)


def _plain_inputs(adapter, prompt, image):
    """What a user of plain transformers would feed, on the model's device: the templated text and the image, as an
    8-bit array (PIL processors) or a float tensor in [0, 1] on the model's device (torchvision processors, which
    then process it there, as they do the adapter's)."""
    full, _, _ = adapter.templated(prompt)
    if adapter.processor.image_processor.backend == "torchvision":
        inputs = adapter.processor(text=[full], images=[[torch.from_numpy(image).to(adapter.device)]], return_tensors="pt",
                                   do_rescale=False, **adapter.processor_kwargs)
    else:
        pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
        inputs = adapter.processor(text=[full], images=[[pixels]], return_tensors="pt", **adapter.processor_kwargs)
    return inputs.to(adapter.device)


def test_ids_are_the_processors_and_the_prompt_is_located_exactly(family):
    name, _, adapter = family
    image = _image()
    enc = adapter.encode(Case("c", PROMPT, image))
    plain = _plain_inputs(adapter, PROMPT, image)
    assert enc.ids.tolist() == plain["input_ids"][0].tolist(), name
    located = adapter.tokenizer.decode(enc.ids[enc.editable].tolist())
    assert located.split() == PROMPT.split(), (name, located)
    assert not enc.editable[~torch.isin(enc.ids, adapter.alphabet)].any(), f"{name}: a special token is editable"


def test_greedy_answers_at_zero_noise_equal_plain_transformers(family):
    name, _, adapter = family
    for seed in range(2):
        image = _image(seed=seed)
        enc = adapter.encode(Case("c", PROMPT, image))
        ours = adapter.run(enc.ids.unsqueeze(0), enc.image.unsqueeze(0), 0, encoded=enc)
        plain = {k: v for k, v in _plain_inputs(adapter, PROMPT, image).items() if k != "labels"}
        with torch.inference_mode():
            out = adapter.model.generate(**plain, max_new_tokens=3, do_sample=False, pad_token_id=adapter.tokenizer.pad_token_id)
        theirs = adapter.tokenizer.batch_decode(out[:, plain["input_ids"].shape[1]:], skip_special_tokens=True)
        assert ours == theirs, name


def test_every_processor_input_reaches_the_model(family):
    """The adapter hands the model every tensor the processor makes (image sizes, grids, masks, token types)."""
    name, _, adapter = family
    image = _image()
    enc = adapter.encode(Case("c", PROMPT, image))
    inputs = adapter.model_inputs(enc, enc.ids.unsqueeze(0), enc.image.unsqueeze(0))
    plain = _plain_inputs(adapter, PROMPT, image)
    assert set(plain) - {"labels"} <= set(inputs), name
    for key in set(plain) - {"labels", "input_ids", "attention_mask"}:
        if isinstance(plain[key], torch.Tensor):
            assert torch.equal(inputs[key], plain[key].to(inputs[key].dtype)), (name, key)
    for key, value in inputs.items():  # on the model's device; floating inputs in its dtype, integer ones stay integer
        if isinstance(value, torch.Tensor):
            assert value.device == adapter.device, (name, key, value.device)
            assert value.dtype == (adapter.dtype if value.is_floating_point() else plain.get(key, value).dtype), (name, key, value.dtype)


def test_every_pad_token_id_is_inside_the_vocabulary(family):
    """A pad id at or past the vocabulary makes torch refuse the embedding ("Padding_idx must be within
    num_embeddings"), and generate pad with a token the model has no row for: every config level (the top-level
    one too, which some transformers versions read) names a pad id the text model has."""
    name, directory, _ = family
    config = json.loads((Path(directory) / "config.json").read_text())
    vocab = config.get("text_config", {}).get("vocab_size", config.get("vocab_size"))
    found = []

    def walk(d, path):
        for key, value in d.items():
            if isinstance(value, dict):
                walk(value, f"{path}{key}.")
            elif key in ("pad_token_id", "_pad_token_id") and value is not None:
                found.append((f"{path}{key}", value))

    walk(config, "")
    assert found, f"{name}: no pad_token_id in config.json"
    assert all(0 <= value < vocab for _, value in found), (name, vocab, found)


def test_label_mode_reads_the_last_position_of_the_full_forward(family):
    """Every family read as a guard: the labels are the argmax of the full forward's last-position logits, and where
    the model takes ``logits_to_keep`` (which label mode passes, to skip the other positions' vocabulary projection)
    its logits equal the full forward's there."""
    name, directory, _ = family
    guard = VisionLanguageModel.from_pretrained(directory, labels={"cube": "cube", "knife": "knife"}, batch_size=8,
                                                **F.SETTINGS.get(name, {}))
    enc = guard.encode(Case("c", PROMPT, _image()))
    other = enc.ids.clone()
    other[enc.editable] = other[enc.editable].flip(0)  # a second sample with the prompt's words reversed (as text noise would)
    ids = torch.stack([enc.ids, other])
    images = torch.stack([enc.image, 1.0 - enc.image])
    with torch.inference_mode():
        inputs = guard.model_inputs(enc, ids, images)
        full = guard.model(**inputs).logits[:, -1]
        if guard._label_kwargs:
            torch.testing.assert_close(guard.model(**inputs, logits_to_keep=1).logits[:, -1], full)
    words = [guard.tokenizer.convert_tokens_to_ids(w) for w in ("cube", "knife")]
    expected = [("cube", "knife")[int(i)] for i in full[:, words].argmax(dim=1)]
    assert guard.run(ids, images, 0, encoded=enc) == expected, name


def test_certify_and_frontier_are_deterministic(family):
    name, _, adapter = family
    oracle = KeywordOracle.refusal()
    smoothed = Smoothed(adapter, oracle, image=Gaussian(0.25), text=UniformReplace(0.1, adapter.alphabet.numel()), seed=0)
    case = Case("c", PROMPT, _image())
    a = smoothed.certify(case, radius=0.1, edits=0, outcome="complied", n_max=64)  # text noise on, as in every sample
    b = smoothed.certify(case, radius=0.1, edits=0, outcome="complied", n_max=64)
    assert (a.status, a.n, a.successes) == (b.status, b.n, b.successes), name
    assert sum(a.label_counts.values()) == a.n
    f = smoothed.frontier(case, max_edits=1, outcome="complied", n=32)
    assert f.n == 32 and len(f.frontier) == 2


CONFTEST = """
import pytest
from certkit.oracles import KeywordOracle


@pytest.fixture(scope="session")
def certkit_oracle():
    return KeywordOracle.refusal()
"""

# one test module per family; each module's own ``certkit_model`` fixture overrides the conftest's, so one
# pytest run covers every family
FAMILY_TESTS = """
import numpy as np
import pytest
from certkit import Case
from certkit.models import VisionLanguageModel

CASE = Case("c", {prompt!r}, np.random.default_rng(0).random((3, 40, 56), dtype=np.float32))


@pytest.fixture(scope="module")
def certkit_model():
    return VisionLanguageModel.from_pretrained({directory!r}, max_new_tokens=3, batch_size=16, **{settings!r})


@pytest.mark.certkit(sigma=0.25, beta=0.1, n_max=64, outcome="complied")
def test_certify(certkit):
    assert certkit.certify(CASE, edits=0, radius=0.1).n >= 1  # text noise on; one edit would need ~4,900 samples


@pytest.mark.certkit(sigma=0.25, beta=0.1, outcome="complied")
def test_frontier(certkit):
    assert len(certkit.frontier(CASE, max_edits=1, n=32).frontier) == 2
"""


def test_every_family_certifies_through_pytest(pytester, tmp_path_factory):
    names = [n for n in CPU_FAMILIES + TORCHVISION_FAMILIES if n in CPU_FAMILIES or _torchvision_ok()
             or os.environ.get("CERTKIT_REQUIRE_TORCHVISION") == "1"]
    pytester.makeconftest(CONFTEST)
    for name in names:
        directory = _checkpoint(name, tmp_path_factory)
        pytester.makepyfile(**{f"test_{name}": FAMILY_TESTS.format(prompt=PROMPT, directory=str(directory),
                                                                   settings=F.SETTINGS.get(name, {}))})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--certkit-json", "r.json", "--certkit-cache-dir", "none",
                                           "--certkit-min-pass-rate", "0")
    result.assert_outcomes(passed=2 * len(names))
    doc = json.loads((pytester.path / "r.json").read_text())
    modes = {}
    for r in doc["results"]:
        for c in r["certificates"]:
            modes.setdefault(r["nodeid"].split(".py")[0].removeprefix("test_"), []).append(c["mode"])
    assert {k: sorted(v) for k, v in modes.items()} == {n: ["certify", "frontier"] for n in names}
    fingerprints = {c["model_fingerprint"] for r in doc["results"] for c in r["certificates"]}
    assert len(fingerprints) == len(names), "each family's module must certify its own model"


def test_a_prompt_with_the_image_token_is_refused_with_its_name(family):
    name, _, adapter = family
    placeholder = adapter.processor.image_token if isinstance(getattr(adapter.processor, "image_token", None), str) else None
    if placeholder is None:
        pytest.skip(f"{name}'s processor names no image token")
    from certkit.models import ModelError

    with pytest.raises(ModelError, match="special token"):
        adapter.encode(Case("c", f"pick {placeholder} up", _image()))
    if adapter.tokenizer.unk_token_id not in adapter.tokenizer("zyzzyva", add_special_tokens=False)["input_ids"]:
        adapter.encode(Case("c", "pick zyzzyva up", _image()))  # a byte-level tokenizer (LLaVA's) spells any word
        return
    with pytest.raises(ModelError, match="cannot spell 'zyzzyva' in the prompt and reads it as its unknown token"):
        adapter.encode(Case("c", "pick zyzzyva up", _image()))


@pytest.fixture(scope="module")
def guard_checkpoint(tmp_path_factory):
    """One tiny LLaVA-NeXT checkpoint for the label-mode tests (a guard is a VLM read in label mode)."""
    return F.build("llava_next", tmp_path_factory.mktemp("guard"))


def test_guard_vlm_as_a_classifier_reads_the_label_logits(guard_checkpoint):
    """Label mode: one forward pass, the label whose word's first token has the highest next-token logit."""
    guard = VisionLanguageModel.from_pretrained(guard_checkpoint, labels={"safe": "safe", "unsafe": "unsafe"}, batch_size=8,
                                                prompt_format="is this safe : {prompt}")
    assert guard.output_kind == "label"
    image = _image()
    enc = guard.encode(Case("g", PROMPT, image))
    assert guard.tokenizer.decode(enc.ids[enc.editable].tolist()).split() == PROMPT.split()
    plain = _plain_inputs(guard, PROMPT, image)
    with torch.inference_mode():
        logits = guard.model(**plain).logits[0, -1]
    ids = [guard.tokenizer.convert_tokens_to_ids(w) for w in ("safe", "unsafe")]
    expected = ["safe", "unsafe"][int(logits[ids].argmax())]
    assert guard.run(enc.ids.unsqueeze(0), enc.image.unsqueeze(0), 0, encoded=enc) == [expected]
    from certkit.oracles import LabelOracle

    cert = Smoothed(guard, LabelOracle(["safe", "unsafe"]), image=Gaussian(0.25), seed=0).certify(
        Case("g", PROMPT, image), radius=0.1, outcome=expected, n_max=64)
    assert cert.n >= 1 and set(cert.label_counts) <= {"safe", "unsafe"}


def test_label_words_that_share_a_first_token_are_refused(guard_checkpoint):
    from certkit.models import ModelError

    with pytest.raises(ModelError, match="begin with the same token"):
        VisionLanguageModel.from_pretrained(guard_checkpoint, labels={"a": "safe", "b": "safe please"})


def test_label_words_the_tokenizer_cannot_spell_are_named_as_such(guard_checkpoint):
    """Unknown words all read as the unknown token: the error names that cause, not a shared first token."""
    from certkit.models import ModelError

    with pytest.raises(ModelError, match=r"labels 'safe' and 'unsafe': this tokenizer cannot spell the words 'Safe' and 'Unsafe' "
                                         r"and reads them all as its unknown token '<unk>'.*choose label words the tokenizer knows"):
        VisionLanguageModel.from_pretrained(guard_checkpoint, labels={"safe": "Safe", "unsafe": "Unsafe"})
    with pytest.raises(ModelError, match=r"label 'unsafe': this tokenizer cannot spell the word 'Unsafe' and reads it as"):
        VisionLanguageModel.from_pretrained(guard_checkpoint, labels={"safe": "safe", "unsafe": "Unsafe"})


def test_a_judge_word_the_tokenizer_cannot_spell_is_blamed_on_the_text_it_is_in(guard_checkpoint):
    """A judge reads its template around the request and the answer as one prompt: an unknown word is named with
    the part it is in (the template, the request's prompt, the answer), never blamed on "the prompt" alone."""
    from certkit.oracles import JudgeOracle, OracleError

    judge = VisionLanguageModel.from_pretrained(guard_checkpoint, labels={"safe": "safe", "unsafe": "unsafe"}, batch_size=8)
    case = Case("j", PROMPT, _image())
    assert JudgeOracle(judge, template="USER : {prompt} ASSISTANT : {answer}")(["I cannot help"], request=case)[0] in ("safe", "unsafe")
    with pytest.raises(OracleError, match=r"case 'j': the word 'Conversation' in the judge template cannot be spelled by the judge's "
                                          r"tokenizer.*rephrase the template"):
        JudgeOracle(judge, template="Conversation : {prompt} ASSISTANT : {answer}")(["I cannot help"], request=case)
    with pytest.raises(OracleError, match=r"the word 'zyzzyva' in the answer being judged cannot be spelled"):
        JudgeOracle(judge, template="USER : {prompt} ASSISTANT : {answer}")(["I cannot zyzzyva"], request=case)
    with pytest.raises(OracleError, match=r"the word 'zyzzyva' in the request's prompt cannot be spelled"):
        JudgeOracle(judge, template="USER : {prompt} ASSISTANT : {answer}")(["I cannot help"],
                                                                             request=Case("j", "pick zyzzyva up", _image()))


def test_shieldgemma2_in_label_mode_agrees_with_its_image_classifier(tmp_path):
    """ShieldGemma 2 as the guard of a release: certkit reads its Gemma 3 model's Yes/No next-token logits after the
    guard's policy template, as ShieldGemma2ForImageClassification does."""
    from transformers import ShieldGemma2ForImageClassification

    directory = build_shieldgemma2(tmp_path / "sg2")
    guard = VisionLanguageModel.from_pretrained(directory, labels={"unsafe": "Yes", "safe": "No"}, batch_size=8)
    classifier = ShieldGemma2ForImageClassification.from_pretrained(directory).to(guard.device).eval()
    policy = "knife to the person"  # the case prompt is the policy text the guard's template wraps
    ours, theirs = [], []
    for seed in range(6):
        enc = guard.encode(Case("p", policy, _image(seed=seed)))
        ours += guard.run(enc.ids.unsqueeze(0), enc.image.unsqueeze(0), 0, encoded=enc)
        with torch.inference_mode():
            probabilities = classifier(**guard.model_inputs(enc, enc.ids.unsqueeze(0), enc.image.unsqueeze(0))).probabilities
        theirs.append("unsafe" if float(probabilities[0, 0]) > float(probabilities[0, 1]) else "safe")
    assert ours == theirs
    from certkit.oracles import LabelOracle

    cert = Smoothed(guard, LabelOracle(["safe", "unsafe"]), image=Gaussian(0.25), seed=0).certify(
        Case("p", policy, _image()), radius=0.1, outcome="safe", n_max=64)
    assert cert.n >= 1


def test_a_checkpoint_missing_weights_is_refused_not_randomly_filled(tmp_path):
    from safetensors.torch import load_file, save_file

    from certkit.models import ModelError

    directory = F.build("llava", tmp_path / "llava")
    weights = next(Path(directory).glob("*.safetensors"))
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ModelError, match="holds no weights for 1 parameter"):
        VisionLanguageModel.from_pretrained(directory)
