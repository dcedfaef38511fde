"""Cases read where the data lives (certkit/datasets_io.py): a parquet file, a save_to_disk folder and a
datasets.Dataset, built here with the datasets library (nothing from a hub); images as the Image feature, as bytes or
as paths; fields=, ClassLabel labels, ids from a column or a content hash, meta; images read only when used; and
every bad input refused in one line naming the source, the row and the id."""

import hashlib
import io
import json
import pickle
import subprocess
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

import certkit.models  # noqa: F401 - imported before the pytester run below uses them (a module first imported
import certkit.oracles  # noqa: F401   inside it is dropped after it, and a later import makes a second class)
import certkit.smoothing  # noqa: F401
from certkit import Case, load_cases, testdata
from certkit.cases import CaseError
from tests.plugin.project import CONFTEST

FEATURES = datasets.Features({"question": datasets.Value("string"), "img": datasets.Image(),
                              "label": datasets.ClassLabel(names=["safe", "unsafe"]), "category": datasets.Value("string"),
                              "thumb": datasets.Value("binary")})
FIELDS = {"prompt": "question", "image": "img", "expected": "label"}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """datasets' Arrow cache of a parquet file goes to the test's folder, not the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _png(value, size=(8, 6), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value).save(buf, format="PNG")
    return buf.getvalue()


def _dataset(n=3, **columns):
    data = {"question": [f"pick up cube {i}" for i in range(n)], "img": [{"bytes": _png((200, 10 * i, 0)), "path": None} for i in range(n)],
            "label": [i % 2 for i in range(n)], "category": ["a" if i else "b" for i in range(n)], "thumb": [b"\x00\x01"] * n}
    data.update(columns)
    return datasets.Dataset.from_dict(data, features=FEATURES)


def _message(source, **kwargs) -> str:
    with pytest.raises(CaseError) as err:
        load_cases(source, **kwargs)
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_the_three_forms_give_the_same_cases(tmp_path):
    """In memory, as parquet and as a save_to_disk folder: the same ids (a content hash where there is no id column),
    prompts, expected labels (ClassLabel names), meta (no binary column) and pixels, none read by load_cases."""
    ds = _dataset()
    ds.to_parquet(str(tmp_path / "cases.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    forms = [load_cases(ds, fields=FIELDS), load_cases(tmp_path / "cases.parquet", fields=FIELDS),
             load_cases(str(tmp_path / "saved"), fields=FIELDS)]
    for cases in forms:
        assert all("image" not in vars(c) for c in cases)  # nothing decoded yet
        assert [(c.id, c.prompt, c.expected, c.meta) for c in cases] == [(c.id, c.prompt, c.expected, c.meta) for c in forms[0]]
    first = forms[0]
    assert [c.expected for c in first] == ["safe", "unsafe", "safe"] and first[1].meta == {"category": "a"}
    assert forms[1][2].where == f"{tmp_path / 'cases.parquet'}: row 2"  # what an error about the case names
    assert len({c.id for c in first}) == 3 and all(len(c.id) == 16 for c in first)
    assert forms[1] == forms[2] == first
    png = tmp_path / "same.png"
    png.write_bytes(_png((200, 10, 0)))
    assert forms[1][1].content_hash == Case("x", "pick up cube 1", png).content_hash  # the same pixels as the PNG file
    assert first[1].shape == (3, 6, 8) and np.allclose(first[1].image[:, 0, 0], [200 / 255, 10 / 255, 0])


def test_ids_are_stable_content_hashes(tmp_path):
    """Without an id column, a row's id is the SHA-256 of its prompt and stored image, whatever else changes."""
    a, b = load_cases(_dataset(), fields=FIELDS), load_cases(_dataset(category=["z", "z", "z"]), fields=FIELDS)
    assert [c.id for c in a] == [c.id for c in b]
    assert a[0].id == hashlib.sha256(b"pick up cube 0\x00" + _png((200, 0, 0))).hexdigest()[:16]


def test_id_column_bytes_and_paths(tmp_path):
    """Ids from a column (numbers as text); images as raw bytes, or as paths relative to the parquet file's folder."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png(90, mode="L"))
    paths = datasets.Dataset.from_dict({"id": [7], "prompt": ["hi"], "image": ["img/a.png"]})
    paths.to_parquet(str(tmp_path / "paths.parquet"))
    case = load_cases(tmp_path / "paths.parquet")[0]
    assert case.id == "7" and case.shape == (1, 6, 8) and np.isclose(case.image.max(), 90 / 255)
    raw = datasets.Dataset.from_dict({"name": ["r"], "prompt": ["hi"], "png": [_png((1, 2, 3))]})
    case = load_cases(raw, fields={"id": "name", "image": "png"})[0]
    assert case.id == "r" and np.allclose(case.image[:, 0, 0] * 255, [1, 2, 3])
    # {"bytes", "path"} structs written without the Image feature's metadata (another tool's parquet) read the same
    struct = datasets.Dataset.from_dict({"id": ["s"], "prompt": ["hi"], "image": [{"bytes": _png((1, 2, 3)), "path": None}]})
    assert isinstance(struct.features["image"], dict) and load_cases(struct)[0].content_hash == case.content_hash


def test_images_are_read_when_used(tmp_path, monkeypatch):
    """Collecting a parametrized test over the cases reads no image; a requirement reads its case's, once while it
    is among the last LAZY_PIXELS_KEPT read."""
    import certkit.datasets_io as dio

    decoded = []
    real = dio.decode_image
    monkeypatch.setattr(dio, "decode_image", lambda *a, **k: decoded.append(1) or real(*a, **k))
    cases = load_cases(_dataset(20), fields=FIELDS)
    ids = [str(c) for c in cases]  # what pytest's ids=str reads
    assert len(set(ids)) == 20 and decoded == []
    assert cases[3] == cases[3] and hash(cases[3].id) and decoded == []
    h = cases[3].content_hash
    assert cases[3].image.shape == (3, 6, 8) and cases[3].content_hash == h and len(decoded) == 1
    assert not cases[3].image.flags.writeable
    copy = pickle.loads(pickle.dumps(cases[5]))  # to another process (multiprocessing): still lazy, and the same case
    assert "image" not in vars(copy) and copy == cases[5]


def _truncated_png() -> bytes:
    whole = _png((1, 2, 3), size=(64, 64))
    return whole[:len(whole) // 2]


BAD = [
    ("missing prompt column", lambda: _dataset(), {}, "no column 'prompt' for the prompt; the columns are question, img, label, "
     "category, thumb: name yours with load_cases(..., fields={'prompt': 'your column'})"),
    ("missing named column", lambda: _dataset(), {**FIELDS, "image": "picture"},
     "no column 'picture' for the image (named by fields={'image': 'picture'}); the columns are question, img"),
    ("missing named id", lambda: _dataset(), {**FIELDS, "id": "uid"}, "no column 'uid' for the id"),
    ("unknown fields key", lambda: _dataset(), {"promt": "question"},
     "fields: unknown key(s) promt; map any of id, prompt, image, expected"),
    ("fields value", lambda: _dataset(), {"prompt": 3}, "fields['prompt'] must be a column name (text), got 3"),
    ("image column type", lambda: _dataset(), {**FIELDS, "image": "label"}, "column 'label' holds ClassLabel(names=['safe', 'unsafe']"),
    ("null image", lambda: _dataset(img=[None, {"bytes": _png(1), "path": None}, None]), FIELDS,
     "the datasets.Dataset: row 0: no image (the column holds null); every case needs one"),
    ("null image with an id", lambda: _dataset(img=[None] * 3).add_column("uid", ["u", "v", "w"]), {**FIELDS, "id": "uid"},
     "row 0 (id 'u'): no image (the column holds null)"),
    ("image not an image", lambda: _dataset(img=[{"bytes": b"not a png", "path": None}] * 3), FIELDS,
     f"row 0 (id '{hashlib.sha256(b'pick up cube 0' + bytes(1) + b'not a png').hexdigest()[:16]}'): image is not a readable image "
     "(cannot identify image file it); re-export it as PNG"),
    ("empty id", lambda: _dataset().add_column("uid", ["a", "", "c"]), {**FIELDS, "id": "uid"},
     "row 1: column 'uid' is empty; every case needs an id"),
    ("float id", lambda: _dataset().add_column("uid", [1.5, 2.0, 3.0]), {**FIELDS, "id": "uid"},
     "row 0 (id 1.5): column 'uid' holds float 1.5; an id must be text or a whole number"),
    ("duplicate id", lambda: _dataset().add_column("uid", ["a", "b", "a"]), {**FIELDS, "id": "uid"},
     "row 2 (id 'a'): duplicate case id 'a' (first in row 0); ids must be unique"),
    ("duplicate row", lambda: _dataset(question=["same"] * 3, img=[{"bytes": _png(5), "path": None}] * 3), FIELDS,
     "duplicate case id"),
    ("null prompt", lambda: _dataset(question=["a", None, "c"]), FIELDS, "row 1: column 'question' is empty; a requirement needs"),
    ("blank prompt", lambda: _dataset(question=["a", "   ", "c"]), FIELDS, "prompt is empty"),
    ("expected not a label", lambda: _dataset().remove_columns("label").add_column("label", [1, 2, 3]), FIELDS,
     "column 'label' holds int 1; the expected outcome must be a label (text)"),
    ("no rows", lambda: _dataset(0), FIELDS, "holds no cases (0 rows)"),
]


@pytest.mark.parametrize("name, make, fields, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_dataset_input_is_one_line(name, make, fields, expected):
    text = _message(make(), fields=fields)
    assert expected in text, text


def test_a_prompt_of_another_type_is_refused():
    ds = datasets.Dataset.from_dict({"prompt": [3], "image": [_png(1)]})
    assert "row 0: column 'prompt' holds int 3; the prompt must be text" in _message(ds)


def test_an_image_path_that_does_not_exist(tmp_path):
    datasets.Dataset.from_dict({"id": ["p"], "prompt": ["hi"], "image": ["img/nowhere.png"]}).to_parquet(str(tmp_path / "c.parquet"))
    assert f"c.parquet: row 0 (id 'p'): image file '{tmp_path}/img/nowhere.png' does not exist; image paths are relative to" in \
        _message(tmp_path / "c.parquet")


def test_an_image_that_breaks_when_read_names_source_row_and_id(tmp_path):
    """A truncated PNG passes the header check at collection and is refused in one line when a requirement reads it."""
    ds = datasets.Dataset.from_dict({"id": ["ok", "cut"], "prompt": ["a", "b"], "image": [_png(1), _truncated_png()]})
    ds.to_parquet(str(tmp_path / "c.parquet"))
    cases = load_cases(tmp_path / "c.parquet")
    assert cases[0].shape == (3, 6, 8)
    with pytest.raises(CaseError) as err:
        cases[1].image
    assert str(err.value).startswith(f"{tmp_path / 'c.parquet'}: row 1 (id 'cut'): image: the row's image bytes is not a readable image")
    assert "\n" not in str(err.value)


def test_bad_sources_are_one_line(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert "broken.parquet: not a readable parquet file (" in _message(tmp_path / "broken.parquet")
    assert _message(tmp_path / "nowhere.parquet") == f"case data '{tmp_path / 'nowhere.parquet'}' does not exist"
    (tmp_path / "plain").mkdir()
    assert "is a folder, not one written by Dataset.save_to_disk (it has no state.json)" in _message(tmp_path / "plain")
    dd = datasets.DatasetDict({"train": _dataset(), "test": _dataset()})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert f"a DatasetDict folder with splits train, test; give one split's folder, e.g. load_cases('{tmp_path / 'dd' / 'train'}')" \
        in _message(tmp_path / "dd")
    assert "load_cases got a DatasetDict with splits train, test; pass one split, e.g. load_cases(ds['train'])" in _message(dd)
    streaming = datasets.IterableDataset.from_generator(lambda: iter([{"prompt": "p"}]))
    assert "streaming IterableDataset, which has no length or random access; load it without streaming=True" in _message(streaming)
    assert "load_cases cannot read a list; give the path of a .jsonl" in _message([{"prompt": "p"}])
    assert "fields must be a dict" in _message(_dataset(), fields=["prompt"])


def test_without_datasets_installed_the_message_names_the_extra(tmp_path):
    _dataset().to_parquet(str(tmp_path / "c.parquet"))
    code = ("import sys; sys.modules['datasets'] = None\nfrom certkit import load_cases\nfrom certkit.cases import CaseError\n"
            f"try:\n    load_cases({str(tmp_path / 'c.parquet')!r})\nexcept CaseError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()
    assert out == f"reading the parquet file '{tmp_path / 'c.parquet'}' needs the `datasets` library: pip install 'certkit[datasets]'"


def test_sources_are_recorded_with_their_digests(tmp_path):
    """parquet: the file's SHA-256; save_to_disk: the folder's manifest digest; in memory: datasets' fingerprint."""
    ds = _dataset()
    ds.to_parquet(str(tmp_path / "c.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    start = testdata.mark()
    for source in (tmp_path / "c.parquet", tmp_path / "saved", ds):
        load_cases(source, fields=FIELDS)
    parquet, saved, memory = testdata.read_since(start)
    assert (parquet["format"], parquet["sha256"], parquet["path"]) == ("parquet", testdata.file_digest(tmp_path / "c.parquet"),
                                                                       str(tmp_path / "c.parquet"))
    assert (saved["format"], saved["sha256"]) == ("save_to_disk", testdata.folder_digest(tmp_path / "saved"))
    assert (memory["format"], memory["sha256"], memory["path"]) == ("datasets.Dataset", ds._fingerprint, None)
    assert parquet["rows"] == 3 and parquet["meta"] == {"category": {"a": 2, "b": 1}} and parquet["image_sizes"] == {"8x6": 3}
    json.dumps(parquet)  # travels as JSON with the reports


def test_a_requirement_on_an_image_that_breaks_fails_in_one_line(pytester, tmp_path, monkeypatch):
    """Through the plugin: the requirement whose image cannot be decoded is an error naming the source, row and id; the
    other case is certified."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    bright = _png((230, 230, 230), size=(64, 64))
    datasets.Dataset.from_dict({"id": ["ok", "cut"], "prompt": ["pick up the cube"] * 2,
                                "image": [bright, _truncated_png()]}).to_parquet(str(pytester.path / "cases.parquet"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_audit="""
from pathlib import Path
import pytest
from certkit import load_cases

@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", load_cases(Path(__file__).parent / "cases.parquet"), ids=str)
def test_bright(certkit, case):
    certkit.assert_certified(case, radius=0.05)
""")
    res = pytester.runpytest("-p", "no:cacheprovider", "--certkit-json", "r.json", "--certkit-report", "none",
                             "--certkit-history", "none", "--certkit-cache-dir", "none")
    statuses = {r["nodeid"]: r["status"] for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert statuses == {"test_audit.py::test_bright[ok]": "certified", "test_audit.py::test_bright[cut]": "error"}
    line = next(x for x in res.outlines if x.startswith("ERROR: certkit could not evaluate test_audit.py::test_bright[cut]"))
    assert line.endswith(f"{pytester.path / 'cases.parquet'}: row 1 (id 'cut'): image: the row's image bytes is not a readable "
                         "image (image file is truncated); re-export it as PNG")


def test_pytest_collects_lazy_cases_without_decoding(pytester, tmp_path, monkeypatch):
    """pytest's collection (ids=str, and its default ids, which look for a ``__name__``) reads no image."""
    import certkit.datasets_io as dio

    decoded = []
    real = dio.decode_image
    monkeypatch.setattr(dio, "decode_image", lambda *a, **k: decoded.append(1) or real(*a, **k))
    _dataset(30).to_parquet(str(pytester.path / "cases.parquet"))
    pytester.makepyfile(test_many="""
from pathlib import Path
import pytest
from certkit import load_cases

CASES = load_cases(Path(__file__).parent / "cases.parquet", fields={"prompt": "question", "image": "img"})

@pytest.mark.parametrize("case", CASES, ids=str)
def test_named(case):
    pass

@pytest.mark.parametrize("case", CASES)
def test_numbered(case):
    pass
""")
    res = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert res.ret == 0 and len([x for x in res.outlines if "::test_" in x]) == 60 and decoded == []
