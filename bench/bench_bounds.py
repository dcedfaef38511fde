"""Max-radius solves: certkit.bounds.max_radius against a nested scipy brentq, in the same run.

Batch of (p_A, d) pairs, d <= 8, uniform kernel V = 32,000, beta = 0.25, sigma = 0.5, tau = 4.6e-5
(the hybrid paper's setting). p_A is drawn from [0.9, 1 - 1e-6], where the brentq reference is itself
accurate (nearer to 1 it loses digits; see tests/test_bounds.py for the mpmath arbitration).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from certkit import bounds
from certkit.noise import Gaussian, UniformReplace

from . import brentq_reference


def run(batch: int = 1000, reference_count: int = 200, repeats: int = 5, seed: int = 0, tau: float = 4.6e-5,
        all_certified: bool = False) -> dict:
    """``all_certified``: keep only pairs with a finite positive radius, so every one needs the full hybrid solve."""
    rng = np.random.default_rng(seed)
    image, text = Gaussian(0.5), UniformReplace(0.25, 32_000)
    p_a = rng.uniform(0.9, 1 - 1e-6, 20 * batch if all_certified else batch)
    d = rng.integers(0 if not all_certified else 1, 9, p_a.size)
    if all_certified:
        keep = np.isfinite(bounds.max_radius(p_a, image, text, d, tau)) & (bounds.max_radius(p_a, image, text, d, tau) > 0)
        p_a, d = p_a[keep][:batch], d[keep][:batch]
        batch = p_a.size
    bounds.max_radius(p_a[:10], image, text, d[:10], tau)  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        radii = bounds.max_radius(p_a, image, text, d, tau)
        times.append(time.perf_counter() - t0)
    batch_s = min(times)
    m = min(reference_count, batch)
    t0 = time.perf_counter()
    ref = np.array([brentq_reference.max_radius(float(p), 0.5, 0.25, 32_000, int(k), tau) if k else
                    0.5 * (brentq_reference.norm.ppf(p) - brentq_reference.norm.ppf(tau)) for p, k in zip(p_a[:m], d[:m])])
    ref_per = (time.perf_counter() - t0) / m
    fin = np.isfinite(ref)
    same_inf = bool(np.array_equal(np.isinf(ref), np.isinf(radii[:m])))
    return {
        "batch": batch,
        "certified": int(np.isfinite(radii).sum()),
        "certkit_batch_s": batch_s,
        "certkit_us_per_radius": 1e6 * batch_s / batch,
        "brentq_s_per_radius": ref_per,
        "speedup": ref_per / (batch_s / batch),
        "compared": m,
        "max_abs_diff": float(np.max(np.abs(radii[:m][fin] - ref[fin]))) if fin.any() else 0.0,
        "same_uncertified": same_inf,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--reference-count", type=int, default=200)
    args = ap.parse_args(argv)
    results = []
    for label, only in (("random pairs, p_A in [0.9, 1-1e-6], d in 0..8", False),
                        ("only certified pairs, d in 1..8 (full hybrid solve each)", True)):
        res = run(args.batch, args.reference_count, all_certified=only)
        print(f"max-radius solves (V=32000, beta=0.25, sigma=0.5, tau=4.6e-5): {label}")
        print(f"  certkit: {res['batch']} radii in {res['certkit_batch_s'] * 1e3:.1f} ms "
              f"({res['certkit_us_per_radius']:.1f} us/radius, best of 5); {res['certified']} certified")
        print(f"  nested brentq: {res['brentq_s_per_radius'] * 1e3:.1f} ms/radius over {res['compared']} radii")
        print(f"  speed-up: {res['speedup']:.0f}x; max |difference| = {res['max_abs_diff']:.2e}; "
              f"same uncertified set: {res['same_uncertified']}")
        results.append(res)
    return results


if __name__ == "__main__":
    main()
