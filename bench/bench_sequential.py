"""Samples to a decision: the sequential test against fixed-n Clopper-Pearson, by simulation.

For p* in {0.5, 0.7, 0.9} and true p_A = p* + 0.05 and p* + 0.2 (and p* - 0.05 for the
other direction), alpha = 0.01, n_max = 100,000: mean samples to a decision and the
decisions reached. Fixed n = 10,000 always spends 10,000.
"""

from __future__ import annotations

import argparse

import numpy as np

from certkit import stats
from certkit.stats import SequentialTest


def simulate(p_true: float, test: SequentialTest, replicates: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised runs of ``test`` on Bernoulli(p_true) data: (decision strings, samples used) per replicate.
    Makes the same decisions as ``SequentialTest.decide`` at each look (tests/test_stats.py checks this)."""
    k = np.zeros(replicates, dtype=np.int64)
    used = np.full(replicates, test.looks[-1])
    decision = np.full(replicates, "inconclusive", dtype=object)
    alive = np.ones(replicates, dtype=bool)
    prev = 0
    for look in test.looks:
        idx = np.nonzero(alive)[0]
        if idx.size == 0:
            break
        k[idx] += rng.binomial(look - prev, p_true, idx.size)
        prev = look
        lower, upper = stats.clopper_pearson(k[idx], np.full(idx.size, look), test.alpha_per_look)
        cert = lower > test.p_star if test.strict else lower >= test.p_star
        futile = ~cert & ((upper <= test.p_star) if test.strict else (upper < test.p_star))
        decision[idx[cert]] = "certified"
        decision[idx[futile]] = "not certified"
        stop = idx[cert | futile]
        used[stop] = look
        alive[stop] = False
    return decision, used


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--replicates", type=int, default=2000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    print(f"sequential test, alpha = 0.01, n_max = 100000, {args.replicates} replicates each")
    print(f"{'p*':>6} {'true p_A':>9} {'mean n':>9} {'median n':>9} {'decision':>22}")
    for p_star in (0.5, 0.7, 0.9):
        test = SequentialTest(p_star, 0.01, 100_000)
        for delta in (0.2, 0.05, -0.05):
            p_true = min(1.0, p_star + delta)
            dec, used = simulate(p_true, test, args.replicates, rng)
            top = max(set(dec), key=list(dec).count)
            rows.append({"p_star": p_star, "p_true": p_true, "mean_n": float(used.mean()), "median_n": float(np.median(used)),
                         "decision": top, "share": float((dec == top).mean())})
            print(f"{p_star:>6} {p_true:>9.2f} {used.mean():>9.0f} {np.median(used):>9.0f} {top:>15} {100 * (dec == top).mean():5.1f}%")
    return rows


if __name__ == "__main__":
    main()
