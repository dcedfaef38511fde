"""Shards: how evenly ``--certkit-shard K/N`` splits a suite by planned cost, and what merging costs.

    python -m bench.bench_sharding [--requirements 5000] [--merge 50000]

* Balance: the demo audit (``audits/``) and a synthetic suite of ``--requirements`` requirements on a third as
  many cases (1 to 5 requirements a case, radii 0.05 to 0.5 and 0 to 2 token edits as test parameters), each
  collected by pytest once; for N = 2, 3, 4, 8 the planned cost of the largest shard against the mean (1.00 is
  perfect; the target is at most 1.10), and the time the split takes.
* Merge: ``--merge`` requirements as 4 shard documents, merged as ``certkit merge`` does, timed, with the peak
  memory Python allocated (tracemalloc).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from certkit.plugin.sharding import Shard, split

ROOT = Path(__file__).resolve().parents[1]


class _Items:
    """A pytest plugin that keeps the collected items."""

    def __init__(self):
        self.items = []

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items):
        self.items = list(items)


def collect(args: list[str]) -> list:
    keeper = _Items()
    code = pytest.main(["--collect-only", "-qq", "-p", "no:cacheprovider", *args], plugins=[keeper])
    if code != 0:
        raise SystemExit(f"collection failed ({code}) for {args}")
    return keeper.items


def synthetic_suite(folder: Path, requirements: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows, i = [], 0
    while len(rows) < requirements:
        for _ in range(rng.randint(1, 5)):
            rows.append((f"c{i}", rng.choice([0.05, 0.1, 0.25, 0.5]), rng.choice([0, 0, 1, 2])))
        i += 1
    rows = rows[:requirements]
    test = folder / "test_synthetic.py"
    test.write_text(textwrap.dedent(f'''
        import numpy as np
        import pytest
        from certkit import Case

        IMAGE = np.zeros((3, 4, 4), dtype=np.float32)
        ROWS = {rows!r}


        @pytest.mark.certkit(sigma=0.5, beta=0.1, threshold=4.6e-5, outcome="ok")
        @pytest.mark.parametrize("case, radius, edits", [(Case(c, "p", IMAGE), r, e) for c, r, e in ROWS],
                                 ids=[f"{{c}}-{{r}}-{{e}}-{{j}}" for j, (c, r, e) in enumerate(ROWS)])
        def test_requirement(certkit, case, radius, edits):
            certkit.assert_certified(case, radius=radius, edits=edits)
    '''))
    (folder / "pytest.ini").write_text("[pytest]\n")
    return test


def balance(name: str, items: list) -> None:
    for total in (2, 3, 4, 8):
        t0 = time.perf_counter()
        _, _, record = split(items, Shard(1, total))
        elapsed = time.perf_counter() - t0
        loads = record["planned_costs"]
        print(f"{name:<28} N = {total}: largest / mean planned cost = {max(loads) / (sum(loads) / total):.3f} "
              f"({len(items)} tests, split in {elapsed:.2f} s)")


def merge_cost(requirements: int) -> None:
    import tracemalloc

    from certkit.results import load_results, merge, write_results

    def cert(i):
        return {"case_id": f"c{i}", "status": "certified", "n": 32, "successes": 32, "p_a_lower": 0.9, "p_a_upper": 1.0,
                "p_adv": 0.8, "p_star": 0.84, "threshold": 0.5, "alpha": 0.01, "edits": 0, "radius": 0.25, "mode": "certify",
                "image_kernel": {"kind": "gaussian", "sigma": 0.5}, "text_kernel": None, "label_counts": {"ok": 32},
                "model_fingerprint": "m", "oracle_fingerprint": "o", "oracle_error": 0.0, "seed": i, "n_max": 10000}

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(4):
            ids = range(k, requirements, 4)
            doc = {"schema": "certkit.results/1",
                   "run": {"models": ["m"], "oracles": ["o"], "seed": 0, "settings": {}, "certkit_version": "0.1.0",
                           "gate": {"min_pass_rate": None, "allow_inconclusive": False}},
                   "summary": {"gate": "passed", "samples": 32 * len(ids), "forward_samples": 32 * len(ids)},
                   "results": [{"nodeid": f"test_x.py::test_r[{i}]", "status": "certified", "test_outcome": "passed",
                                "error": None, "certificates": [cert(i)]} for i in ids], "cases": {}}
            path = Path(tmp) / f"shard-{k + 1}.json"
            write_results(path, doc)
            paths.append(path)
        size = sum(p.stat().st_size for p in paths)
        tracemalloc.start()
        t0 = time.perf_counter()
        docs = [load_results(p, "shard") for p in paths]
        merged = merge(docs, [str(p) for p in paths])
        write_results(Path(tmp) / "merged.json", merged)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"merge of {requirements} requirements in 4 shards ({size / 1e6:.1f} MB of JSON): {elapsed:.2f} s, "
          f"peak Python memory {peak / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requirements", type=int, default=5000)
    parser.add_argument("--merge", type=int, default=50_000)
    args = parser.parse_args()
    balance("demo audit (audits/)", collect([str(ROOT / "audits"), "--rootdir", str(ROOT)]))
    with tempfile.TemporaryDirectory() as tmp:
        test = synthetic_suite(Path(tmp), args.requirements)
        balance(f"synthetic ({args.requirements} reqs)", collect([str(test), "--rootdir", tmp]))
    merge_cost(args.merge)
    print(json.dumps({"requirements": args.requirements, "merge": args.merge}))


if __name__ == "__main__":
    main()
