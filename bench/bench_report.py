"""Report size, render time and time to interactive in headless Chromium: ``python -m bench.bench_report``.

A synthetic audit of ``--cases`` cases x 4 requirements (d = 0..3; default 12,500 cases = 50,000 requirements)
in 20 tests, prompts of 40 to 80 characters, every case with a 48 px demo-world thumbnail; a tenth not certified,
1% inconclusive, 0.2% errors. Rendered by ``certkit.report.render_report`` (best of 3), then opened in headless
Chromium (``--dump-dom``): "ready" is the script's own ``performance.now()`` when the filters are live (the page
parsed and every row indexed), "filtered" the same with a filter in the address (``#filter?status=n``), and the
wall time is the whole browser process, start to exit.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from certkit.report import render_report

WORDS = "pick up the red cube and place it in the box near the window then describe what you see".split()


def synthetic(n_cases: int = 12_500, per_case: int = 4, seed: int = 0) -> dict:
    from certkit.demo import world

    rng = np.random.default_rng(seed)
    results, cases = [], {}
    for i in range(n_cases):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        img = world.sample(rng).image  # a realistic 3x32x32 case image
        buf = io.BytesIO()
        Image.fromarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(buf, format="PNG", optimize=True)
        prompt = " ".join(rng.choice(WORDS, size=int(rng.integers(8, 16))))
        cases[h] = {"id": f"case-{i:05d}", "prompt": prompt, "hash": h,
                    "thumbnail": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}
        for d in range(per_case):
            u = rng.random()
            status = "error" if u < 0.002 else "inconclusive" if u < 0.012 else "not certified" if u < 0.112 else "certified"
            nodeid = f"audits/test_x.py::test_group_{i % 20}[case-{i:05d}-{d}]"
            if status == "error":
                results.append({"nodeid": nodeid, "status": status, "test_outcome": "failed", "certificates": [],
                                "error": "RuntimeError: CUDA out of memory while sampling"})
                continue
            lower = float(rng.uniform(0.5, 1.0))
            cert = dict(case_id=f"case-{i:05d}", outcome="harmless" if i % 3 else "refuse", edits=d, radius=0.25, threshold=0.5,
                        alpha=0.01, status=status, p_a_lower=lower, p_a_upper=min(1.0, lower + 0.05),
                        p_star=(0.8413, 0.8812, 0.9105, 0.9387)[d],
                        p_adv=0.6, n=int(rng.integers(30, 10_000)), successes=29, seed=i, mode="certify", n_max=10000, case_hash=h,
                        image_kernel={"kind": "gaussian", "sigma": 0.25},
                        text_kernel={"kind": "uniform_replace", "beta": 0.1, "vocab_size": 32000}, frontier=[],
                        label_counts={"harmless": 29}, timings={})
            results.append({"nodeid": nodeid, "status": status, "test_outcome": "passed", "error": None, "certificates": [cert]})
    counts = {s: sum(r["status"] == s for r in results) for s in ("certified", "not certified", "inconclusive", "error")}
    n = len(results)
    return {"schema": "certkit.results/1",
            "run": {"certkit_version": "bench", "run_id": "bench", "started": "2026-11-30T00:00:00Z", "settings": {"alpha": 0.01},
                    "gate": {}},
            "summary": {"requirements": n, **counts, "pass_rate": counts["certified"] / n, "samples": 300 * n,
                        "forward_samples": 300 * n, "gate": "failed", "gate_reason": "FAILED: bench"},
            "results": results, "cases": cases}


def chromium_ready(path: Path, fragment: str = "") -> tuple[int | None, int | None, float]:
    """(ms to interactive by the page's own clock, rows shown, browser wall seconds) for the page in headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        return None, None, float("nan")
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.perf_counter()
        out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                              "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                              "--dump-dom", path.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
    ready = re.search(r'data-ready="(\d+)"', out.stdout)
    shown = re.search(r'data-shown="(\d+)"', out.stdout)
    return (int(ready.group(1)) if ready else None), (int(shown.group(1)) if shown else None), wall


def layout_pages(rows: int = 50_000, block: int = 1000) -> dict[str, str]:
    """Two bare pages of the same rows (no report around them): one table, and blocks of ``block`` rows each in its
    own table under ``content-visibility: auto``, as the report lays them out."""
    rng = np.random.default_rng(0)
    body = [f"<tr><td>case-{i // 4:05d}<td>{i % 4}<td>{rng.uniform(0.5, 1):.4f}<td>1<td>0.8413<td>{rng.integers(30, 10_000)}<td>certified"
            for i in range(rows)]
    ready = "<script>document.documentElement.dataset.ready=Math.round(performance.now())</script>"
    head = ("<!DOCTYPE html><html><head><meta charset=utf-8><style>table{table-layout:fixed;width:100%}.cv{content-visibility:auto}"
            "</style></head><body>")
    one = head + "<table><tbody>" + "\n".join(body) + "</tbody></table>" + ready + "</body></html>"
    blocks = "".join(f'<div class="cv"><table><tbody>{"".join(body[i:i + block])}</tbody></table></div>' for i in range(0, rows, block))
    return {"one table": one, f"blocks of {block}": head + blocks + ready + "</body></html>"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=12_500, help="cases (4 requirements each; default 12,500 = 50,000 requirements)")
    ap.add_argument("--no-browser", action="store_true", help="size and render time only")
    ap.add_argument("--layout", action="store_true", help="only: 50,000 bare rows as one table against blocks of 1,000")
    args = ap.parse_args(argv)
    if args.layout:
        with tempfile.TemporaryDirectory() as tmp:
            for name, html in layout_pages().items():
                page = Path(tmp) / "page.html"
                page.write_text(html, encoding="utf-8")
                ready, _, wall = chromium_ready(page)
                print(f"50,000 bare rows, {name}: {ready} ms to the end of the page by its clock; browser process {wall:.1f} s")
        return
    doc = synthetic(args.cases)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        html = render_report(doc)
        times.append(time.perf_counter() - t0)
    size = len(html.encode())
    print(f"{len(doc['results'])} requirements, {len(doc['cases'])} cases: report {size:,} bytes ({size / 1e6:.2f} MB), "
          f"{html.count('data:image/png;base64,')} thumbnails embedded, rendered in {min(times):.2f} s (best of 3)")
    if args.no_browser:
        return
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "audit.html"
        page.write_text(html, encoding="utf-8")
        for fragment in ("", "#filter?status=n"):
            ready, shown, wall = chromium_ready(page, fragment)
            if ready is None:
                print("chromium: not installed or the page's script did not run")
                break
            print(f"chromium{' ' + fragment if fragment else ''}: interactive after {ready / 1000:.2f} s by the page's clock, "
                  f"{shown} rows shown; browser process {wall:.1f} s start to exit")


if __name__ == "__main__":
    main()
