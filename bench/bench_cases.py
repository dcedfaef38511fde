"""Collecting a large parquet test set: the time and peak memory of ``load_cases`` and of pytest's collection, with
the images read lazily (when a requirement uses them) rather than decoded up front.

``python -m bench.bench_cases [--rows 100000] [--side 16]``

Builds, in a temporary folder, a parquet file of ``--rows`` rows written by ``datasets`` (``Dataset.to_parquet``): a
prompt, a 4-valued ``category`` column and a ``side`` x ``side`` RGB PNG of random pixels per row, as the datasets
Image feature. Each measurement runs in a fresh process, so its peak memory is that process's own (``VmHWM``):

- ``imports``: a process that only imports certkit, datasets and PIL (what the others start from);
- ``load_cases, cold``: ``load_cases(parquet)`` with an empty datasets cache (datasets converts the file to its
  memory-mapped Arrow cache once);
- ``load_cases, warm``: the same again, the cache there;
- ``decode every image``: after a warm load, every case's pixels read once (the time eager loading would add; holding
  them all would take rows x 3 x side^2 x 4 bytes more, printed beside it);
- ``pytest --collect-only``: a test module parametrized over the cases (``ids=str``), collected by pytest.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# peak memory: VmHWM of the process (Linux), not ru_maxrss, which a process started by a large one inherits across exec
PEAK = r'''
import resource
def peak_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
'''

PROBE = PEAK + r'''
import json, sys, time
t0 = time.perf_counter()
import certkit, datasets, PIL.Image
from certkit import load_cases
t1 = time.perf_counter()
what, path = sys.argv[1], sys.argv[2]
n = None
if what in ("load", "decode"):
    cases = load_cases(path)
    n = len(cases)
    assert not any("image" in vars(c) for c in cases)  # nothing decoded by load_cases
t2 = time.perf_counter()
if what == "decode":
    for c in cases:
        c.image
t3 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1, "decode_s": t3 - t2, "rows": n,
                  "maxrss_mb": peak_mb()}))
'''

TEST_MODULE = '''
import pytest
from certkit import load_cases

CASES = load_cases({path!r})


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case):
    assert case.image is not None
'''

PYTEST_PROBE = PEAK + r'''
import json, sys, time
import pytest
t0 = time.perf_counter()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", sys.argv[1]])
print(json.dumps({"collect_s": time.perf_counter() - t0, "exit": int(code),
                  "maxrss_mb": peak_mb()}))
'''


def build(folder: Path, rows: int, side: int) -> Path:
    """The parquet file: ``rows`` rows of prompt, category and a random ``side`` x ``side`` PNG (Image feature)."""
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(rows):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
        images.append({"bytes": buf.getvalue(), "path": None})
    features = datasets.Features({"prompt": datasets.Value("string"), "category": datasets.Value("string"), "image": datasets.Image()})
    ds = datasets.Dataset.from_dict({"prompt": [f"describe what is in picture {i}" for i in range(rows)],
                                     "category": [("weapons", "drugs", "privacy", "benign")[i % 4] for i in range(rows)],
                                     "image": images}, features=features)
    datasets.disable_progress_bars()
    path = folder / "cases.parquet"
    ds.to_parquet(str(path))
    return path


def _run(code: str, *args: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_cases: a measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    """Build the parquet file, measure each step in a fresh process and print a table; returns the measurements."""
    ap = argparse.ArgumentParser(prog="python -m bench.bench_cases", description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--side", type=int, default=16, help="each image is side x side RGB pixels")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cases-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        path = build(folder, args.rows, args.side)
        built = time.perf_counter() - t0
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "hf-cache"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        print(f"{args.rows:,} rows of {args.side}x{args.side} RGB PNGs: {path.stat().st_size / 1e6:.1f} MB parquet, built in {built:.1f} s")
        res = {
            "imports": _run(PROBE, "imports", str(path), env=env),
            "load_cases, cold": _run(PROBE, "load", str(path), env=env),
            "load_cases, warm": _run(PROBE, "load", str(path), env=env),
            "decode every image": _run(PROBE, "decode", str(path), env=env),
        }
        (folder / "test_big.py").write_text(TEST_MODULE.format(path=str(path)))
        res["pytest --collect-only"] = _run(PYTEST_PROBE, str(folder / "test_big.py"), env=env)
    base = res["imports"]["maxrss_mb"]
    print(f"{'step':<24}{'time (s)':>10}{'peak RSS (MB)':>15}{'above imports (MB)':>20}")
    for name, m in res.items():
        key = ("collect_s" if "collect_s" in m else "imports_s" if name == "imports" else
               "decode_s" if name.startswith("decode") else "load_s")
        seconds = m[key]
        print(f"{name:<24}{seconds:>10.2f}{m['maxrss_mb']:>15.0f}{m['maxrss_mb'] - base:>20.0f}")
    pixels = args.rows * 3 * args.side ** 2 * 4 / 2 ** 20
    print(f"every image decoded and held (eager) would add {pixels:,.0f} MB of float32 pixels")
    return res


if __name__ == "__main__":
    main()
