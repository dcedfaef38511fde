"""Report size and render time for a large audit: ``python -m bench.bench_report``.

5,000 requirements (1,250 cases x 4 requirements each, every case with a 48 px thumbnail), a tenth of them
not certified, rendered by ``certkit.report.render_report``; best of 3.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import time

import numpy as np
from PIL import Image

from certkit.report import render_report


def synthetic(n_cases: int = 1250, per_case: int = 4, seed: int = 0) -> dict:
    from certkit.demo import world

    rng = np.random.default_rng(seed)
    results, cases = [], {}
    for i in range(n_cases):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        img = world.sample(rng).image  # a realistic 3x32x32 case image
        buf = io.BytesIO()
        Image.fromarray((img.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(buf, format="PNG", optimize=True)
        cases[h] = {"id": f"case-{i}", "prompt": f"prompt number {i} for the audit", "hash": h,
                    "thumbnail": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}
        for d in range(per_case):
            status = "not certified" if rng.random() < 0.1 else "certified"
            cert = dict(case_id=f"case-{i}", outcome="harmless", edits=d, radius=0.25, threshold=0.5, alpha=0.01, status=status,
                        p_a_lower=0.97, p_a_upper=0.99, p_star=0.95, p_adv=0.6, n=300, successes=295, seed=i, mode="certify",
                        n_max=10000, case_hash=h, frontier=[], label_counts={"harmless": 295}, timings={})
            results.append({"nodeid": f"audits/test_x.py::test_group_{i % 20}[case-{i}-{d}]", "status": status,
                            "test_outcome": "passed", "error": None, "certificates": [cert]})
    n = len(results)
    cert_n = sum(r["status"] == "certified" for r in results)
    return {"schema": "certkit.results/1", "run": {"certkit_version": "bench", "settings": {"alpha": 0.01}, "gate": {}},
            "summary": {"requirements": n, "certified": cert_n, "not certified": n - cert_n, "inconclusive": 0, "error": 0,
                        "pass_rate": cert_n / n, "samples": 300 * n, "forward_samples": 300 * n, "gate": "failed"},
            "results": results, "cases": cases}


def main(argv=None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    doc = synthetic()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        html = render_report(doc)
        times.append(time.perf_counter() - t0)
    embedded = html.count("data:image/png;base64,")
    print(f"{len(doc['results'])} requirements, {len(doc['cases'])} cases: report {len(html.encode()) / 2**20:.2f} MiB, "
          f"{embedded} thumbnails embedded, rendered in {min(times):.2f} s (best of 3)")


if __name__ == "__main__":
    main()
