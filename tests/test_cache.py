"""The count cache (certkit/cache.py): counts reused, never across models; a corrupt file detected and rebuilt, a
tampered row dropped; a full disk is not corruption; backups of corrupt files never overwrite each other. Faults of a
run around the cache (a locked cache, a cache path that is a file, interrupted draws) are in test_faults.py."""

import sqlite3

import pytest

from certkit import Smoothed
from certkit.noise import Gaussian
from certkit.oracles import LabelOracle
from tests.brightness import brightness_model, case


def test_cache_reuses_counts_and_never_across_models(tmp_path):
    oracle = LabelOracle(["dark", "bright"])
    s1 = Smoothed(brightness_model(), oracle, image=Gaussian(0.5), seed=0, cache=tmp_path)
    first = s1.certify(case(0.6), radius=0.1, outcome="bright", n_max=1_000)
    assert first.timings["forward_samples"] > 0 and not first.cached
    again = Smoothed(brightness_model(), oracle, image=Gaussian(0.5), seed=0, cache=tmp_path).certify(
        case(0.6), radius=0.1, outcome="bright", n_max=1_000)
    assert again.cached and "forward_samples" not in again.timings
    assert (again.status, again.n, again.successes) == (first.status, first.n, first.successes)
    # a different model (other weights) never reuses the counts
    other = brightness_model()
    other.fingerprint = "different-weights"
    fresh = Smoothed(other, oracle, image=Gaussian(0.5), seed=0, cache=tmp_path).certify(
        case(0.6), radius=0.1, outcome="bright", n_max=1_000)
    assert not fresh.cached and fresh.timings["forward_samples"] > 0


def test_corrupt_cache_is_detected_and_rebuilt(tmp_path):
    oracle = LabelOracle(["dark", "bright"])
    Smoothed(brightness_model(), oracle, image=Gaussian(0.5), seed=0, cache=tmp_path).certify(
        case(0.6), radius=0.1, outcome="bright", n_max=200)
    (tmp_path / "counts.sqlite").write_bytes(b"this is not a database" * 100)
    for extra in ("counts.sqlite-wal", "counts.sqlite-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    s = Smoothed(brightness_model(), oracle, image=Gaussian(0.5), seed=0, cache=tmp_path)
    assert s.cache.rebuilt and list(tmp_path.glob("counts.sqlite.corrupt-*"))
    cert = s.certify(case(0.6), radius=0.1, outcome="bright", n_max=200)
    assert not cert.cached


def test_tampered_cache_row_is_dropped(tmp_path):
    oracle = LabelOracle(["dark", "bright"])
    s = Smoothed(brightness_model(), oracle, image=Gaussian(0.5), seed=0, cache=tmp_path)
    s.certify(case(0.6), radius=0.1, outcome="bright", n_max=200)
    conn = sqlite3.connect(tmp_path / "counts.sqlite")
    conn.execute("UPDATE streams SET labels = zeroblob(length(labels))")
    conn.commit()
    conn.close()
    cert = Smoothed(brightness_model(), oracle, image=Gaussian(0.5), seed=0, cache=tmp_path).certify(
        case(0.6), radius=0.1, outcome="bright", n_max=200)
    assert not cert.cached and cert.timings["forward_samples"] > 0


def test_a_full_disk_is_not_corruption(tmp_path):
    import numpy as np

    from certkit.cache import CacheWarning, CountCache

    cache = CountCache(tmp_path)
    cache.put("small", ("a", "b"), np.zeros(8, dtype=np.uint8))
    cache._conn.execute("PRAGMA max_page_count = 8")  # the database may not grow: sqlite reports SQLITE_FULL
    with pytest.warns(CacheWarning, match="full"):
        cache.put("big", ("a", "b"), np.zeros(1 << 20, dtype=np.uint8))
    assert cache.disabled and not cache.rebuilt and not list(tmp_path.glob("*.corrupt-*"))
    assert CountCache(tmp_path).get("small", ("a", "b")).size == 8  # what was stored is still there


def test_backups_of_corrupt_caches_never_overwrite_each_other(tmp_path):
    from certkit.cache import CountCache

    for _ in range(3):  # three corrupt files in the same second
        (tmp_path / "counts.sqlite").write_bytes(b"garbage" * 200)
        assert CountCache(tmp_path).rebuilt
    assert len(list(tmp_path.glob("counts.sqlite.corrupt-*"))) == 3
