"""The bad-input matrix: every malformed input a user can hand certkit, each with the error that names the
field at fault and the fix.

Four groups, one table each: case files (``load_cases``), images (files and arrays), settings (plugin
options, ini keys and requirement arguments) and what models and oracles return. The last test runs a
pytest session where faulty requirements sit beside sound ones: each faulty one is recorded as an error
with its message and no traceback, the sound ones keep their certificates, and the gate fails.
Faults of the run itself (SIGINT, full disk, a locked cache) are in ``test_faults.py``, a crashed worker in
``plugin/test_recording.py``, a corrupt cache in ``test_cache.py``.
"""

import json

import numpy as np
import pytest
import torch

from certkit import Case, Smoothed, load_cases
from certkit.cases import CaseError
from certkit.errors import CertkitError, RequirementError
from certkit.models import ModelError
from certkit.models.base import EncodedCase
from certkit.noise import Gaussian, Mask, UniformReplace
from certkit.oracles import ClassifierOracle, KeywordOracle, LabelOracle, OracleError
from tests.brightness import VOCAB, _smoothed, bright_case, brightness_model, tokenize


def _png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


# ---------------------------------------------------------------- case files

OK = '{"id": "a", "prompt": "hi", "image": "ok.png"}\n'

CASE_FILES = [
    ("cases.jsonl", OK + '{"id": "b", "image": "ok.png"}\n', "cases.jsonl:2: case is missing required field(s) prompt"),
    ("cases.jsonl", '{"id": "a", "prompt": "hi", "image": "missing.png"}\n', "cases.jsonl:1: image: file"),
    ("cases.jsonl", OK + "\n" + OK, "cases.jsonl:3: duplicate case id 'a' (first on line 1); ids must be unique"),
    ("cases.jsonl", OK.rstrip("}\n") + "\n", "cases.jsonl:1: not valid JSON"),
    ("cases.jsonl", '["a", "hi", "ok.png"]\n', "cases.jsonl:1: a case must be a mapping with id, prompt and image, got list"),
    ("cases.jsonl", '{"id": "a", "prompt": ["hi", "there"], "image": "ok.png"}\n', "cases.jsonl:1: prompt must be text, got list"),
    ("cases.jsonl", '{"id": "a", "prompt": "hi", "image": 5}\n',
     "cases.jsonl:1: image must be a file path relative to the case file, got int"),
    ("cases.jsonl", '{"id": "a", "prompt": "hi", "image": "ok.png", "expected": {"x": 1}}\n',
     "expected must be an outcome label (text), got dict"),
    ("cases.jsonl", '{"id": "a", "prompt": "   ", "image": "ok.png"}\n', "cases.jsonl:1: case 'a': prompt is empty"),
    ("cases.jsonl", "", "holds no cases"),
    ("cases.jsonl", '{"id": "a", "prompt": "hi", "image": "."}\n', "is not a file; give the path of a PNG or JPEG image"),
    ("cases.yaml", "- id: a\n  prompt: hi\n  image: ok.png\n- id: b\n  prompt: a: b\n  image: ok.png\n", "cases.yaml:5: not valid YAML"),
    ("cases.yaml", "- id: a\n  prompt: hi\n  image: ok.png\n- id: b\n  image: ok.png\n",
     "cases.yaml:4: case is missing required field(s) prompt"),
    ("cases.yaml", "- id: a\n  prompt: yes\n  image: ok.png\n", "cases.yaml:1: prompt must be text, got bool True; quote it"),
    ("cases.yaml", "- id: no\n  prompt: hi\n  image: ok.png\n", "cases.yaml:1: id must be text or a whole number, got bool False"),
    ("cases.yaml", "just a sentence\n", "a YAML case file must be a list of cases"),
    ("cases.yaml", "- id: a\n  prompt: hi\n  prompt: again\n  image: ok.png\n",
     "cases.yaml:3: not valid YAML (duplicate key 'prompt' (first on line 2)"),
    ("cases.csv", "id,prompt,image\na,hi,ok.png\nb,,ok.png\n", "cases.csv:3: case is missing required field(s) prompt"),
    ("cases.csv", "id,prompt\na,hi\n", "cases.csv:2: case is missing required field(s) image"),
    ("cases.csv", "id,prompt,image\na,caf\xe9,ok.png\n".encode("latin-1"),
     "is not UTF-8 text (byte 21: invalid continuation byte); save it as UTF-8"),
    ("cases.txt", OK, "unknown format '.txt'; use .jsonl, .yaml/.yml or .csv"),
]


@pytest.mark.parametrize("name, content, message", CASE_FILES, ids=[f"{i:02d}-{row[0]}" for i, row in enumerate(CASE_FILES)])
def test_malformed_case_file(tmp_path, name, content, message):
    _png(tmp_path / "ok.png", np.full((8, 8, 3), 200, np.uint8))
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CaseError) as raised:
        load_cases(path)
    assert message in str(raised.value)


def test_a_missing_case_file_is_named(tmp_path):
    with pytest.raises(CaseError, match="case file .*nowhere.jsonl' does not exist"):
        load_cases(tmp_path / "nowhere.jsonl")


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
    """Excel writes UTF-8 CSV with a BOM; reading it as part of the header would lose the 'id' column."""
    _png(tmp_path / "ok.png", np.full((8, 8, 3), 200, np.uint8))
    (tmp_path / "cases.csv").write_text("\ufeffid,prompt,image\na,hi,ok.png\n", encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("\ufeff" + OK, encoding="utf-8")
    assert [c.id for c in load_cases(tmp_path / "cases.csv")] == [c.id for c in load_cases(tmp_path / "cases.jsonl")] == ["a"]


# ---------------------------------------------------------------- images


def _file(writer):
    def build(tmp_path):
        path = tmp_path / "image"
        writer(path)
        return path
    return build


def _truncated_png(path):
    _png(path.with_suffix(".png"), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.with_suffix(".png").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _float_tiff(path):
    from PIL import Image

    Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(path, format="TIFF")


def _animated_gif(path):
    from PIL import Image

    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])


def _nan_image(_):
    arr = np.zeros((3, 4, 4))
    arr[0, 0, 0] = np.nan
    return arr


IMAGES = [
    ("missing file", lambda tmp: tmp / "nope.png", "does not exist; fix the path"),
    ("a folder", lambda tmp: tmp, "is not a file"),
    ("not an image", _file(lambda p: p.write_bytes(b"not a png")), "is not a readable image"),
    ("truncated PNG", _file(_truncated_png), "is not a readable image"),
    ("float TIFF", _file(_float_tiff), "holds floating-point pixels"),
    ("animated GIF", _file(_animated_gif), "is animated (2 frames); certkit certifies one still image"),
    ("HWC array", lambda tmp: np.zeros((8, 8, 3)), "convert HWC arrays with .transpose(2, 0, 1)"),
    ("four channels", lambda tmp: np.zeros((4, 8, 8)), r"shape (C, H, W) with C = 1 or 3"),
    ("empty array", lambda tmp: np.zeros((3, 0, 8)), r"shape (C, H, W)"),
    ("8-bit scale", lambda tmp: np.full((3, 4, 4), 255.0), "divide 8-bit images by 255"),
    ("negative pixels", lambda tmp: np.full((3, 4, 4), -0.1), "must lie in [0, 1]"),
    ("NaN pixel", _nan_image, "NaN or infinite pixels"),
    ("not pixels", lambda tmp: {"pixels": 1}, "image must be a path or an array of pixels"),
]


@pytest.mark.parametrize("build, message", [row[1:] for row in IMAGES], ids=[row[0] for row in IMAGES])
def test_bad_image(tmp_path, build, message):
    with pytest.raises(CaseError) as raised:
        Case("x", "hi", build(tmp_path))
    assert message in str(raised.value)


# ---------------------------------------------------------------- settings and requirement arguments


REQUIREMENTS = [
    ("unknown outcome", lambda s: s.certify(bright_case(), outcome="purple"), OracleError, "unknown outcome label 'purple'"),
    ("unparseable outcome", lambda s: s.certify(bright_case(), outcome="unparseable"), OracleError, "always count against"),
    ("alpha 0", lambda s: s.certify(bright_case(), radius=0.1, outcome="bright", alpha=0.0), RequirementError,
     "alpha must lie strictly between 0 and 1"),
    ("alpha 1.5", lambda s: s.certify(bright_case(), radius=0.1, outcome="bright", alpha=1.5), RequirementError, "alpha must lie strictly"),
    ("threshold 1", lambda s: s.certify(bright_case(), radius=0.1, outcome="bright", threshold=1.0), RequirementError,
     "threshold must lie"),
    ("negative radius", lambda s: s.certify(bright_case(), radius=-1.0, outcome="bright"), RequirementError,
     "radius must be a finite, non-negative"),
    ("NaN radius", lambda s: s.certify(bright_case(), radius=float("nan"), outcome="bright"), RequirementError, "radius must be a finite"),
    ("edits without text noise", lambda s: s.certify(bright_case(), edits=1, outcome="bright"), RequirementError,
     "edits > 0 needs text noise"),
    ("negative edits", lambda s: s.certify(bright_case(), edits=-1, outcome="bright"), RequirementError,
     "edits must be a non-negative integer"),
    ("fractional edits", lambda s: s.certify(bright_case(), edits=1.5, outcome="bright"), RequirementError,
     "edits must be a non-negative integer"),
    ("n_max 0", lambda s: s.certify(bright_case(), outcome="bright", n_max=0), RequirementError, "n_max must be a positive integer"),
    ("threshold that underflows p*", lambda s: s.certify(bright_case(), radius=0.1, outcome="bright", threshold=1e-320), RequirementError,
     "threshold must lie strictly between 0 and 1 (and be at least 1e-300"),
    ("unreachable radius", lambda s: s.certify(bright_case(), radius=50.0, outcome="bright"), RequirementError, "unreachable requirement"),
    ("alpha that underflows", lambda s: s.certify(bright_case(), radius=0.1, outcome="bright", alpha=1e-310), RequirementError,
     "alpha must lie strictly between 0 and 1 (and be at least 1e-300"),
    ("frontier n 0", lambda s: s.frontier(bright_case(), outcome="bright", n=0), RequirementError, "n must be a positive integer"),
    ("not a case", lambda s: s.certify("not a case", outcome="bright"), CaseError, "case must be a certkit.Case, got str; build one with"),
    ("string seed", lambda s: _smoothed(seed="7"), RequirementError, "seed must be an integer"),
    ("vocab mismatch", lambda s: Smoothed(s.model, s.oracle, text=UniformReplace(0.2, 5)), ModelError, "use UniformReplace(0.2, 28)"),
    ("mask without mask id", lambda s: Smoothed(brightness_model(mask_id=None), s.oracle, text=Mask(0.2)), ModelError,
     "set the adapter's mask_id"),
    ("not an adapter", lambda s: Smoothed(torch.nn.Linear(2, 2), s.oracle), ModelError,
     "wrap it in VisionLanguageModel or TorchClassifier"),
    ("not an oracle", lambda s: Smoothed(s.model, lambda outs: outs), OracleError, "oracle must be a certkit.oracles.Oracle, got function"),
    ("not a kernel", lambda s: Smoothed(s.model, s.oracle, image=0.25), RequirementError,
     "image must be certkit.noise.Gaussian(sigma) or None, got float"),
]


@pytest.mark.parametrize("call, error, message", [row[1:] for row in REQUIREMENTS], ids=[row[0] for row in REQUIREMENTS])
def test_bad_requirement(call, error, message):
    with pytest.raises(error) as raised:
        call(_smoothed())
    assert message in str(raised.value)


PLUGIN_SETTINGS = [  # (setting, raw value as typed, message); the source is named as the user wrote it
    ("alpha", "2", "option --certkit-alpha alpha = 2.0: alpha must lie strictly between 0 and 1"),
    ("n_max", "lots", "option --certkit-n-max n_max = 'lots' is not a valid int"),
    ("n_max", "2.5", "n_max = '2.5' is not a valid int"),
    ("sigma", "-1", "sigma = -1.0: sigma must be > 0"),
    ("sigma", "inf", "sigma = inf: sigma must be > 0"),
    ("beta", "1.5", "beta = 1.5: beta must lie in [0, 1)"),
    ("kernel", "gauss", "kernel must be 'uniform' or 'mask'"),
    ("threshold", "0", "threshold"),
    ("min_pass_rate", "120", "min_pass_rate must lie in [0, 1]"),
    ("allow_inconclusive", "perhaps", "allow_inconclusive = 'perhaps' is not a valid bool"),
]


@pytest.mark.parametrize("name, raw, message", PLUGIN_SETTINGS, ids=[f"{n}={r}" for n, r, _ in PLUGIN_SETTINGS])
def test_bad_plugin_setting(name, raw, message):
    from certkit.plugin.settings import RUN_OPTIONS, SETTINGS, convert, opt_name, validate

    kind = {**SETTINGS, **RUN_OPTIONS}[name][0]
    source = f"option {opt_name(name)}"
    with pytest.raises(pytest.UsageError) as raised:
        validate(name, convert(name, kind, raw, source), source)
    assert message in str(raised.value) and source in str(raised.value)


# ---------------------------------------------------------------- what models and oracles return


class _Logits(torch.nn.Module):
    """A classifier module whose logits come from ``make(batch)``."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def forward(self, ids, images):
        return self.make(ids.shape[0])


class _Generator:
    """A hand-written generator adapter (the contract a user's own adapter follows) whose batch outputs come
    from ``answer(batch)``."""

    output_kind = "text"
    fingerprint = "hand-written-generator"
    device = torch.device("cpu")
    alphabet = torch.arange(2, VOCAB)
    mask_id = 0
    batch_size = 64

    def __init__(self, answer):
        self.answer = answer

    def encode(self, case):
        ids = torch.tensor(tokenize(case.prompt))
        return EncodedCase(ids, torch.ones_like(ids, dtype=torch.bool), torch.tensor(case.image))

    def run(self, ids, images, seed):
        return self.answer(ids.shape[0])


def _classifier(make):
    return Smoothed(brightness_model(_Logits(make)), LabelOracle(["dark", "bright"]), image=Gaussian(0.25))


def _generator(answer):
    return Smoothed(_Generator(answer), KeywordOracle.refusal(), image=Gaussian(0.25))


MODEL_OUTPUTS = [
    ("NaN logits", lambda: _classifier(lambda b: torch.full((b, 2), float("nan"))), "bright",
     ModelError, "returned NaN logits for 32 of 32 noisy samples; certkit will not guess"),
    ("logits for too few samples", lambda: _classifier(lambda b: torch.zeros(b - 1, 2)), "bright",
     ModelError, "returned logits for 31 samples from a batch of 32"),
    ("logits for three classes", lambda: _classifier(lambda b: torch.zeros(b, 3)), "bright",
     ModelError, "logits of shape (32, 3); expected (batch, 2)"),
    ("one logit vector", lambda: _classifier(lambda b: torch.zeros(2)), "bright", ModelError, "logits of shape (2,)"),
    ("one output short", lambda: _generator(lambda b: ["I cannot"] * (b - 1)), "refused",
     ModelError, "returned 31 outputs for a batch of 32 samples; it must return exactly one per sample"),
    ("three outputs too many", lambda: _generator(lambda b: ["I cannot"] * (b + 3)), "refused", ModelError, "returned 35 outputs"),
    ("None outputs", lambda: _generator(lambda b: [None] * b), "refused", ModelError, "returned a NoneType as output 0"),
    ("bytes outputs", lambda: _generator(lambda b: [b"I cannot"] * b), "refused", ModelError, "returned a bytes as output 0"),
    ("a tensor", lambda: _generator(lambda b: torch.zeros(b)), "refused", ModelError, "must return a list of 32 strings"),
    ("one string", lambda: _generator(lambda b: "I cannot"), "refused",
     ModelError, "must return a list of 32 strings (one output per sample), got str"),
    ("undeclared oracle label",
     lambda: Smoothed(brightness_model(), ClassifierOracle(lambda outs: ["maybe"] * len(outs), ["dark", "bright"], name="rogue"),
                      image=Gaussian(0.25)), "bright",
     OracleError, "returned label 'maybe', outside its declared set"),
    ("oracle returns too few labels",
     lambda: Smoothed(brightness_model(), ClassifierOracle(lambda outs: ["dark"], ["dark", "bright"], name="short"),
                      image=Gaussian(0.25)), "bright",
     OracleError, "returned 1 labels for 32 outputs"),
    ("prompt token outside the alphabet", lambda: Smoothed(brightness_model(tokenize=lambda t: [1, 2, 3]), LabelOracle(["dark", "bright"]),
                                                           image=Gaussian(0.25), text=UniformReplace(0.2, VOCAB - 2)), "bright",
     ModelError, "prompt token ids [1] are not in the replacement alphabet (special tokens?)"),
    ("prompt of no tokens",
     lambda: Smoothed(brightness_model(tokenize=lambda t: []), LabelOracle(["dark", "bright"]), image=Gaussian(0.25)),
     "bright", ModelError, "the prompt tokenizes to no tokens"),
    ("prompt longer than the context",
     lambda: Smoothed(brightness_model(max_length=3), LabelOracle(["dark", "bright"]), image=Gaussian(0.25)),
     "bright", ModelError, "prompt has 6 tokens, more than the model's context of 3"),
]


@pytest.mark.parametrize("build, outcome, error, message", [row[1:] for row in MODEL_OUTPUTS], ids=[row[0] for row in MODEL_OUTPUTS])
def test_bad_model_output(build, outcome, error, message):
    smoothed = build()
    edits = 1 if smoothed.text is not None else 0
    with pytest.raises(error) as raised:
        smoothed.certify(bright_case(), edits=edits, outcome=outcome, threshold=4.6e-5 if edits else 0.5, n_max=200)
    assert message in str(raised.value)
    assert isinstance(raised.value, CertkitError)


def test_the_matrix_has_at_least_25_rows_in_each_group_taken_together():
    groups = {"case files": len(CASE_FILES), "images": len(IMAGES), "settings": len(REQUIREMENTS) + len(PLUGIN_SETTINGS),
              "model outputs": len(MODEL_OUTPUTS)}
    assert all(n >= 10 for n in groups.values()) and sum(groups.values()) >= 25, groups


# ---------------------------------------------------------------- through a pytest run: nothing lost, nothing certified

CONFTEST = '''
import pytest
import torch
from certkit.models import TorchClassifier
from certkit.oracles import LabelOracle


class Faulty(torch.nn.Module):
    """Brightness classifier; a mean pixel of exactly 0.25 makes it return NaN logits (a numerics bug)."""

    def forward(self, ids, images):
        s = images.mean(dim=(1, 2, 3)) - 0.5
        logits = torch.stack([-s, s], 1)
        if bool((ids == 19).any()):  # a 17-letter word: the model hangs (a stuck server, a deadlock)
            import time
            time.sleep(60)
        return torch.where((images[:, 0, 0, 0] > 5.0)[:, None], torch.full_like(logits, float("nan")), logits)


@pytest.fixture(scope="session")
def certkit_model():
    return TorchClassifier(Faulty(), ["dark", "bright"], lambda t: [2 + len(w) % 20 for w in t.split()],
                           vocab_size=24, special_ids=[0, 1], mask_id=0, batch_size=64, max_length=8)


@pytest.fixture(scope="session")
def certkit_oracle():
    return LabelOracle(["dark", "bright"])
'''

TESTS = '''
import numpy as np
import pytest
from certkit import Case

BRIGHT = np.full((3, 8, 8), 0.9, dtype=np.float32)


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("cid", ["sound-1", "sound-2"])
def test_sound(certkit, cid):
    certkit.assert_certified(Case(cid, "pick up the cube", BRIGHT), radius=0.05)


@pytest.mark.certkit(beta=0.0, outcome="bright")
def test_unknown_outcome(certkit):
    certkit.assert_certified(Case("u", "pick up the cube", BRIGHT), outcome="brite")


@pytest.mark.certkit(beta=0.0, outcome="bright")
def test_negative_radius(certkit):
    certkit.assert_certified(Case("r", "pick up the cube", BRIGHT), radius=-0.5)


@pytest.mark.certkit(beta=0.0, outcome="bright")
def test_long_prompt(certkit):
    certkit.assert_certified(Case("l", "one two three four five six seven eight nine", BRIGHT))


@pytest.mark.certkit(beta=0.0, outcome="bright", sigma=100.0)
def test_nan_logits(certkit):
    certkit.frontier(Case("n", "pick up the cube", BRIGHT), n=64)


def test_bad_image(certkit):
    certkit.assert_certified(Case("i", "pick up the cube", np.full((8, 8, 3), 0.5)), outcome="bright")


@pytest.mark.certkit(beta=0.0, outcome="bright", sigma=None)
def test_marker_none(certkit):
    certkit.assert_certified(Case("m", "pick up the cube", BRIGHT), radius=0.05)


@pytest.mark.certkit(beta=0.0, outcome="bright", alpha="0.01")
def test_sound_string_alpha(certkit):
    certkit.assert_certified(Case("s", "pick up the cube", BRIGHT), radius=0.05)


@pytest.mark.certkit(beta=0.0, outcome="bright", timeout=1.0)
def test_hangs(certkit):
    certkit.assert_certified(Case("h", "pick up xxxxxxxxxxxxxxxxx", BRIGHT), radius=0.05)
'''


def test_faulty_requirements_are_errors_beside_sound_ones(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_faulty=TESTS)
    res = pytester.runpytest_subprocess("--certkit-json", "r.json", "--certkit-n-max", "500", "--certkit-report", "none")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    out = res.stdout.str()
    assert "Traceback" not in out and "raise " not in out
    doc = json.loads((pytester.path / "r.json").read_text())
    by_test = {r["nodeid"].split("::")[-1]: r for r in doc["results"]}
    assert {t: r["status"] for t, r in by_test.items()} == {
        "test_sound[sound-1]": "certified", "test_sound[sound-2]": "certified", "test_unknown_outcome": "error",
        "test_negative_radius": "error", "test_long_prompt": "error", "test_nan_logits": "error", "test_bad_image": "error",
        "test_marker_none": "error", "test_sound_string_alpha": "certified", "test_hangs": "error"}
    expected = {
        "test_unknown_outcome": "unknown outcome label 'brite' for oracle label; its labels are ['dark', 'bright']",
        "test_negative_radius": "radius must be a finite, non-negative image l2 distance, got -0.5",
        "test_long_prompt": "prompt has 9 tokens, more than the model's context of 8",
        "test_nan_logits": "NaN logits",
        "test_bad_image": "convert HWC arrays with .transpose(2, 0, 1)",
        "test_marker_none": "sigma=None is not a value; give a float or leave the key out",
        "test_hangs": "took longer than its timeout of 1 s",
    }
    for test, message in expected.items():
        assert message in by_test[test]["error"], (test, by_test[test]["error"])
        assert not by_test[test]["certificates"]
    assert doc["summary"]["certified"] == 3 and doc["summary"]["error"] == 7 and doc["summary"]["gate"] == "failed"


def test_a_model_fixture_that_returns_none_is_named(pytester):
    pytester.makeconftest(CONFTEST.replace("    return TorchClassifier(", "    TorchClassifier("))
    pytester.makepyfile(test_faulty=TESTS)
    res = pytester.runpytest_subprocess("-k", "sound_1 or sound-1", "--certkit-json", "r.json", "--certkit-report", "none")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*the `certkit_model` fixture returned None; it must return the model adapter (a missing `return`?)*"])
    assert "Traceback" not in res.stdout.str()


# every keyword of the fixture's certify / assert_certified / frontier, given badly: (call, the requirement's error)
ARGUMENTS = [
    ('certkit.assert_certified(C, outcome="bright", alpha="often")', "argument alpha = 'often' is not a valid float"),
    ('certkit.assert_certified(C, outcome="bright", alpha=2)', "argument alpha = 2.0: alpha must lie strictly between 0 and 1"),
    ('certkit.certify(C, outcome="bright", threshold=True)', "argument threshold = True is not a valid float"),
    ('certkit.assert_certified(C, outcome="bright", n_max=2.5)', "argument n_max = 2.5 is not a valid int"),
    ('certkit.assert_certified(C, outcome="bright", sigma=-1)', "argument sigma = -1.0: sigma must be > 0"),
    ('certkit.frontier(C, outcome="bright", beta="lots")', "argument beta = 'lots' is not a valid float"),
    ('certkit.assert_certified(C, outcome=1)', "argument outcome = 1: give the outcome label as text"),
    ('certkit.assert_certified(C, outcome="bright", edits="1")', "edits must be a non-negative integer number of token positions, got '1'"),
    ('certkit.certify(C, outcome="bright", radius="0.1")', "radius must be a finite, non-negative image l2 distance, got '0.1'"),
    ('certkit.frontier(C, outcome="bright", n="many")', "n must be a positive integer, got 'many'"),
    ('certkit.frontier(C, outcome="bright", max_edits=-1)', "max_edits must be a non-negative integer (the frontier's largest"),
    ('certkit.certify(C, outcome="bright", sigm=0.5)', "certkit.certify() got unknown keyword(s) ['sigm']; it takes edits, radius, "),
    ('certkit.assert_certified(C, outcome="bright", eps=0.1)', "certkit.assert_certified() got unknown keyword(s) ['eps']"),
    ('certkit.frontier(C, outcome="bright", radius=0.1)', "certkit.frontier() got unknown keyword(s) ['radius']; it takes max_edits, "),
    ("certkit.assert_certified(C)", "no outcome to certify: pass outcome=..., set it with @pytest.mark.certkit(outcome=...), the "),
    ('certkit.assert_certified(Case("x", "hi", BRIGHT, expected=3))', "case 'x': expected = 3 is no outcome label"),
]
# where a requirement's outcome comes from: an argument > the marker (or ini, or command line) > the case's expected label
OUTCOMES = """

def test_expected(certkit):
    certkit.assert_certified(Case("e", "hi", BRIGHT, expected="bright"), radius=0.05)


@pytest.mark.certkit(outcome="dark")
def test_marker_over_expected(certkit):
    certkit.certify(Case("m", "hi", BRIGHT, expected="bright"), radius=0.05)


@pytest.mark.certkit(outcome="dark")
def test_argument_over_marker(certkit):
    certkit.assert_certified(Case("a", "hi", BRIGHT, expected="dark"), radius=0.05, outcome="bright")


def test_string_alpha_is_read_as_the_marker_reads_it(certkit):
    certkit.assert_certified(C, radius=0.05, outcome="bright", alpha="0.01")


def test_caught(certkit):
    try:
        certkit.certify(C, outcome="brite")
    except Exception:
        pass  # the requirement is still an error


@pytest.mark.certkit(sigm=0.5)
def test_marker_typo(certkit):
    certkit.assert_certified(C, outcome="bright")
"""


def test_bad_fixture_arguments_fail_their_requirement_in_one_line(pytester):
    """Each bad keyword fails its own requirement with one line naming it (no traceback, no TypeError from a
    comparison), a missing outcome too; the case's expected label is the outcome nowhere else given; an error the
    test catches still makes its requirement an error."""
    from tests.plugin.project import QUICK

    pytester.makeconftest(CONFTEST)
    body = "".join(f"\n\ndef test_{i}(certkit):\n    {call}\n" for i, (call, _) in enumerate(ARGUMENTS))
    pytester.makepyfile(test_arguments="import pytest\nimport numpy as np\nfrom certkit import Case\n\n"
                        "BRIGHT = np.full((3, 8, 8), 0.9, dtype=np.float32)\nC = Case('c', 'hi', BRIGHT)\n"
                        "pytestmark = pytest.mark.certkit(beta=0.0)\n" + body + OUTCOMES)
    res = pytester.runpytest_inprocess(*QUICK, "--certkit-json", "r.json", "--certkit-report", "none", "--certkit-n-max", "300")
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    out = res.stdout.str()
    assert "Traceback" not in out and "raise " not in out and "TypeError" not in out, out
    records = {r["nodeid"].split("::")[-1]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    for i, (call, message) in enumerate(ARGUMENTS):
        assert records[f"test_{i}"]["status"] == "error" and message in records[f"test_{i}"]["error"], (call, records[f"test_{i}"])
        res.stdout.fnmatch_lines([f"ERROR: certkit could not evaluate test_arguments.py::test_{i}: *"])
    outcome = {name: [(c["outcome"], c["status"]) for c in records[name]["certificates"]] for name in
               ("test_expected", "test_marker_over_expected", "test_argument_over_marker",
                "test_string_alpha_is_read_as_the_marker_reads_it")}
    assert outcome == {"test_expected": [("bright", "certified")], "test_marker_over_expected": [("dark", "not certified")],
                       "test_argument_over_marker": [("bright", "certified")],
                       "test_string_alpha_is_read_as_the_marker_reads_it": [("bright", "certified")]}
    assert records["test_caught"]["status"] == "error" and "unknown outcome label 'brite'" in records["test_caught"]["error"]
    res.stdout.fnmatch_lines(["*test_arguments.py::test_caught: unknown outcome label 'brite'* (the test caught it; *"])
    assert records["test_marker_typo"]["status"] == "error" and "unknown setting(s) ['sigm']" in records["test_marker_typo"]["error"]


def test_devices_that_nvidia_smi_does_not_list_are_refused(pytester, monkeypatch):
    fake = pytester.path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho '0, GPU-aaaa'\necho '1, GPU-bbbb'\n")
    (fake / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_faulty=TESTS)
    res = pytester.runpytest_subprocess("--certkit-devices", "0,3")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "--certkit-devices names GPU(s) ['3'] that nvidia-smi does not list (it lists: 0, 1)" in res.stderr.str()


def test_a_malformed_case_file_errors_the_collection(pytester):
    pytester.makeconftest(CONFTEST)
    _png(pytester.path / "ok.png", np.full((8, 8, 3), 200, np.uint8))
    (pytester.path / "cases.yaml").write_text("- id: a\n  prompt: hi\n  image: ok.png\n- id: b\n  prompt: no\n  image: ok.png\n")
    pytester.makepyfile(test_cases='''
from pathlib import Path
import pytest
import certkit
CASES = certkit.load_cases(Path(__file__).parent / "cases.yaml")

@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(certkit, case):
    certkit.assert_certified(case, outcome="bright", beta=0.0)
''')
    res = pytester.runpytest_subprocess()
    assert res.ret == pytest.ExitCode.INTERRUPTED  # collection error: nothing ran, nothing passed
    out = res.stdout.str()
    assert "ERROR: certkit could not collect test_cases.py: " in out
    assert "cases.yaml:4: prompt must be text, got bool False; quote it" in out
    assert "Traceback" not in out and "raise " not in out
    assert "certkit gate INCOMPLETE: the run did not finish (1 collection error(s)" in out
    res.assert_outcomes(errors=1, failed=1)  # the collection error, and the gate it leaves INCOMPLETE


def test_a_bad_marker_is_said_once_per_test_function_with_its_count(pytester):
    """Every case of a parametrized test with a bad marker is an error, but the message is said in full once, with how
    many cases share it; the other cases name that one. A marker given to one case alone is said for that case."""
    from tests.plugin.project import QUICK

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_marker='''
import numpy as np
import pytest
from certkit import Case

CASES = [Case(f"c{i}", "hi", np.full((3, 8, 8), 0.9, dtype=np.float32)) for i in range(3)]


@pytest.mark.certkit(sigmaa=0.5)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_typo(certkit, case):
    certkit.assert_certified(case, outcome="bright")


@pytest.mark.parametrize("case", [CASES[0], pytest.param(CASES[1], marks=pytest.mark.certkit(sigma=-1.0))], ids=str)
def test_one_bad(certkit, case):
    certkit.assert_certified(case, outcome="bright", radius=0.05, beta=0.0)
''')
    res = pytester.runpytest_inprocess(*QUICK, "--certkit-json", "r.json", "--certkit-report", "none", "--certkit-n-max", "300")
    out = res.stdout.str()
    # pytest's -ra summary repeats each error's first line, cut to the terminal's width except under CI=true: count the
    # messages above it
    said = out.split("short test summary info")[0]
    full = "certkit marker on test_marker.py::test_typo: unknown setting(s) ['sigmaa']"
    assert said.count(full) == 1, out
    assert f"test_marker.py::test_typo[c0]: {full}; known: " in out and "(said once for the 3 cases of this test that share it)" in out
    assert said.count("test_marker.py::test_typo: the error said at test_marker.py::test_typo[c0], shared by 3 cases") == 2
    records = {r["nodeid"].split("::")[-1]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert [records[f"test_typo[c{i}]"]["status"] for i in range(3)] == ["error"] * 3
    assert records["test_one_bad[c0]"]["status"] == "certified"
    assert "marker on test_marker.py::test_one_bad sigma = -1.0" in records["test_one_bad[c1]"]["error"]
    assert "said once" not in records["test_one_bad[c1]"]["error"]


def test_a_wrong_expected_label_names_the_case_file_and_line(pytester):
    """A case file's expected label that the oracle does not have fails its requirement with the file and line."""
    from tests.plugin.project import QUICK

    pytester.makeconftest(CONFTEST)
    _png(pytester.path / "b.png", np.full((8, 8, 3), 230, np.uint8))
    (pytester.path / "cases.jsonl").write_text('{"id": "ok", "prompt": "hi", "image": "b.png", "expected": "bright"}\n\n'
                                               '{"id": "typo", "prompt": "hi", "image": "b.png", "expected": "brigth"}\n')
    pytester.makepyfile(test_expected='''
import pytest
import certkit

@pytest.mark.certkit(beta=0.0)
@pytest.mark.parametrize("case", certkit.load_cases("cases.jsonl"), ids=str)
def test_case(certkit, case):
    certkit.assert_certified(case, radius=0.05)
''')
    res = pytester.runpytest_inprocess(*QUICK, "--certkit-json", "r.json", "--certkit-report", "none", "--certkit-n-max", "300")
    assert ("ERROR: certkit could not evaluate test_expected.py::test_case[typo]: cases.jsonl:3: case 'typo': expected = 'brigth' is "
            "not a label of oracle 'label', whose labels are ['dark', 'bright']; correct the case's expected label") in res.stdout.str()
    records = {r["nodeid"].split("::")[-1]: r["status"] for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert records == {"test_case[ok]": "certified", "test_case[typo]": "error"}
