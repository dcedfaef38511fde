"""The test data a run read (certkit/testdata.py): digests a third party can recompute, the characteristics' caps,
summing and merging, and results.json's ``test_data`` from a real run, with and without xdist (test modules are
imported on the workers, so the records travel with the reports)."""

import hashlib
import json
import shutil
import subprocess

import datasets  # imported before any pytester run: datasets registers Arrow extension types once per process
import numpy as np
import pytest
from PIL import Image

import certkit.models  # noqa: F401 - and so is what the in-process run uses: a module first imported inside it is dropped
import certkit.oracles  # noqa: F401   after it, and a later import would make a second Gaussian class that isinstance refuses
import certkit.smoothing  # noqa: F401
from certkit import load_cases, results, testdata
from tests.plugin.project import CONFTEST


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """datasets' Arrow cache of a parquet file goes to the test's folder (this process's and the workers'), not the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def test_file_digest_is_sha256sum(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"id": 1}\n' * 1000)
    assert testdata.file_digest(tmp_path / "a.jsonl") == hashlib.sha256(b'{"id": 1}\n' * 1000).hexdigest()


@pytest.mark.skipif(shutil.which("sha256sum") is None or shutil.which("find") is None, reason="needs GNU coreutils and findutils")
def test_folder_digest_is_the_documented_shell_pipeline(tmp_path):
    """The digest of a save_to_disk folder is what the README's shell line prints: anyone can recompute it."""
    folder = tmp_path / "saved"
    (folder / "sub").mkdir(parents=True)
    for name, data in {"state.json": b"{}", "data-00000-of-00001.arrow": b"\x00" * 300, "sub/b c.txt": b"x", "B.txt": b"y"}.items():
        (folder / name).write_bytes(data)
    shell = subprocess.run("find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum", shell=True,
                           cwd=folder, capture_output=True, text=True, check=True)
    assert testdata.folder_digest(folder) == shell.stdout.split()[0]
    before = testdata.folder_digest(folder)
    (folder / "sub" / "b c.txt").write_bytes(b"z")
    assert testdata.folder_digest(folder) != before


def test_characteristics_count_categories_only():
    """A column of text, numbers, booleans or nulls with at most MAX_META_VALUES values is counted; an id-like column
    with more, and a column holding lists, are not; sizes beyond MAX_IMAGE_SIZES are summed under "other"."""
    n = testdata.MAX_META_VALUES + 1
    metas = [{"category": ["a", "b"][i % 2], "flag": i % 3 == 0, "note": f"row {i}", "tags": ["x"], "level": None if i else 1}
             for i in range(n)]
    meta, _ = testdata.characteristics(metas, [])
    assert meta == {"category": {"a": 26, "b": 25}, "flag": {"false": 34, "true": 17}, "level": {"1": 1, "null": 50}}
    sizes = [(w, 1) for w in range(1, testdata.MAX_IMAGE_SIZES + 3)] + [(1, 1)] * 5
    _, counted = testdata.characteristics([], sizes)
    assert counted["1x1"] == 6 and counted["other"] == 2 and len(counted) == testdata.MAX_IMAGE_SIZES + 1


def _source(path, sha, rows, meta, sizes, fmt="jsonl"):
    return {"path": path, "sha256": sha, "format": fmt, "rows": rows, "meta": meta, "image_sizes": sizes}


def test_summarize_counts_each_source_once():
    a = _source("a.jsonl", "1" * 64, 2, {"kind": {"x": 2}}, {"8x8": 2})
    b = _source("b.parquet", "2" * 64, 3, {"kind": {"x": 1, "y": 2}}, {"8x8": 1, "4x4": 2}, "parquet")
    changed = _source("a.jsonl", "3" * 64, 1, {}, {"8x8": 1})
    td = testdata.summarize([b, a, dict(a), changed])  # a read twice (two modules, or two workers): once
    assert [(s["path"], s["sha256"][0]) for s in td["sources"]] == [("a.jsonl", "1"), ("a.jsonl", "3"), ("b.parquet", "2")]
    assert td["cases"] == 6 and td["meta"] == {"kind": {"x": 3, "y": 2}} and td["image_sizes"] == {"4x4": 2, "8x8": 4}
    assert testdata.summarize([]) is None
    # shards of one run read the same data: merged, it counts once; a shard without test data adds nothing
    assert testdata.merge([td, None, json.loads(json.dumps(td))]) == td


def test_certkit_merge_sums_the_shards_sources_once():
    """Two shards' files: a source both read counts once, one only the second read is added, exactly."""
    a = _source("a.jsonl", "1" * 64, 2, {"kind": {"x": 2}}, {"8x8": 2})
    b = _source("b.parquet", "2" * 64, 3, {"kind": {"y": 3}}, {"4x4": 3}, "parquet")
    shard = {"schema": results.RESULTS_SCHEMA, "run": {"seed": 0}, "summary": {}, "results": [], "cases": {}}
    merged = results.merge([{**shard, "test_data": testdata.summarize([a])}, {**shard, "test_data": testdata.summarize([a, b])}],
                           ["1.json", "2.json"])
    assert merged["test_data"] == testdata.summarize([a, b]) and merged["test_data"]["cases"] == 5
    assert "test_data" not in results.merge([shard, shard], ["1.json", "2.json"])


def test_build_adds_test_data_only_when_read():
    assert "test_data" not in results.build([], {}, {})
    td = testdata.summarize([_source("a.jsonl", "1" * 64, 1, {}, {"8x8": 1})])
    assert results.build([], {}, {}, test_data=td)["test_data"] == td


def _png(path, value, size=(8, 8)):
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def _data(folder):
    """A parquet file (4 rows, two sizes, a category column) and a JSONL case file: bright images, so certified fast."""
    images = []
    for i in range(4):
        _png(folder / "p.png", 230 + i, (8, 8) if i < 3 else (6, 4))
        images.append({"bytes": (folder / "p.png").read_bytes(), "path": None})
    features = datasets.Features({"prompt": datasets.Value("string"), "image": datasets.Image(), "category": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"prompt": [f"pick up cube {i}" for i in range(4)], "image": images,
                                     "category": ["a", "a", "a", "b"]}, features=features)
    ds.to_parquet(str(folder / "cases.parquet"))
    _png(folder / "j.png", 240)
    (folder / "cases.jsonl").write_text('{"id": "j1", "prompt": "pick up the cube", "image": "j.png", "kind": "plain"}\n')


AUDIT = '''
from pathlib import Path
import pytest
from certkit import load_cases

HERE = Path(__file__).parent
CASES = load_cases(HERE / "cases.parquet")[:2] + load_cases(HERE / "cases.jsonl")


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bright(certkit, case):
    certkit.assert_certified(case, radius=0.05)
'''


def test_results_record_the_test_data_the_workers_read(pytester):
    """results.json's test_data under xdist, where only the workers import the test module: both sources (paths from
    the rootdir, the files' SHA-256), all their rows (also the parquet rows no test used), the meta counts and image
    sizes, each source once though both workers read it."""
    _data(pytester.path)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_audit=AUDIT)
    res = pytester.runpytest("-n", "2", "-p", "no:cacheprovider", "--certkit-json", "r.json", "--certkit-report", "none",
                             "--certkit-history", "none", "--certkit-cache-dir", "none")
    res.assert_outcomes(passed=3)
    td = json.loads((pytester.path / "r.json").read_text())["test_data"]
    digest = {name: hashlib.sha256((pytester.path / name).read_bytes()).hexdigest() for name in ("cases.parquet", "cases.jsonl")}
    assert [{k: s[k] for k in ("path", "sha256", "format", "rows")} for s in td["sources"]] == [
        {"path": "cases.jsonl", "sha256": digest["cases.jsonl"], "format": "jsonl", "rows": 1},
        {"path": "cases.parquet", "sha256": digest["cases.parquet"], "format": "parquet", "rows": 4}]
    assert td["cases"] == 5 and td["meta"] == {"category": {"a": 3, "b": 1}, "kind": {"plain": 1}}
    assert td["image_sizes"] == {"6x4": 1, "8x8": 4}


def test_a_run_in_this_process_records_only_its_own_reads(pytester):
    """A run without xdist (pytester's, in this process): what this process read before the run is not its test data."""
    _data(pytester.path)
    load_cases(pytester.path / "cases.parquet")
    (pytester.path / "other.jsonl").write_text('{"id": "o", "prompt": "p", "image": "j.png"}\n')
    load_cases(pytester.path / "other.jsonl")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_audit=AUDIT.replace('load_cases(HERE / "cases.parquet")[:2] + ', ""))
    pytester.runpytest("-p", "no:cacheprovider", "--certkit-json", "r.json", "--certkit-report", "none", "--certkit-history", "none",
                       "--certkit-cache-dir", "none").assert_outcomes(passed=1)
    td = json.loads((pytester.path / "r.json").read_text())["test_data"]
    assert [s["path"] for s in td["sources"]] == ["cases.jsonl"] and td["cases"] == 1 and td["meta"] == {"kind": {"plain": 1}}
