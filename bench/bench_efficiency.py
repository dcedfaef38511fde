"""Samples a certify decision costs, against the information limit, for the shipped test and the old one.

``python -m bench.bench_efficiency [--replicates 200]``: for p* in {0.69, 0.84, 0.98} and true p_A from p* - 0.08
to 1 in steps of 0.02 (p_A = p* left out: no test decides there), alpha = 0.01, n_max = 100,000, the mean number
of samples to a decision of

* the shipped test, :class:`certkit.sequential.MixtureTest` (looks after every sample), and
* the old one, :class:`certkit.stats.SequentialTest` (Clopper-Pearson on a geometric grid of looks from 32),

each against Wald's limit ``log(1/alpha) / KL(p_A || p*)``, the fewest samples any level-alpha test can spend on
average. Both tests see Bernoulli(p_A) outcomes, as ``Smoothed.certify`` does on a model whose p_A is known exactly.

``python -m bench.bench_efficiency --draws``: only the forward passes ``Smoothed.certify`` spends against the samples
its decision used (a coin-flip model at p* = 0.96 and 0.9996, batches of 64 and 512; six radii on one demo case).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from certkit.sequential import MixtureTest
from certkit.stats import SequentialTest

ALPHA = 0.01
N_MAX = 100_000
P_STARS = (0.69, 0.84, 0.98)


def kl(p: float, q: float) -> float:
    a = p * math.log(p / q) if p > 0 else 0.0
    b = (1 - p) * math.log((1 - p) / (1 - q)) if p < 1 else 0.0
    return a + b


def cells():
    for p_star in P_STARS:
        for p_true in np.round(np.arange(p_star - 0.08, 1.0 + 1e-9, 0.02), 4):
            if abs(p_true - p_star) > 1e-9:
                yield p_star, float(min(1.0, p_true))


def six_requirements_on_one_case() -> None:
    """Six radii on one demo case through the demo guard: forward passes with one stream per case, against each
    requirement drawing its own stream (what certkit did before: the sum of their samples, rounded to chunks)."""
    from pathlib import Path

    from certkit import Smoothed, load_cases
    from certkit.demo import load_guard
    from certkit.noise import Gaussian, UniformReplace
    from certkit.oracles import LabelOracle

    guard = load_guard(device="cpu")
    case = next(c for c in load_cases(Path(__file__).parents[1] / "audits" / "data" / "cases.jsonl") if c.expected == "unsafe")
    make = lambda: Smoothed(guard, LabelOracle(["safe", "unsafe"]), Gaussian(0.5), UniformReplace(0.25, guard.alphabet.numel()), seed=0)  # noqa: E731
    shared, radii = make(), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    certs = [shared.certify(case, radius=r, outcome="unsafe", n_max=100_000) for r in radii]
    one_stream = sum(c.timings.get("forward_samples", 0) for c in certs)
    alone = sum(make().certify(case, radius=r, outcome="unsafe", n_max=100_000).timings.get("forward_samples", 0) for r in radii)
    print(f"six requirements on case {case.id} (radii {radii}): n = {[c.n for c in certs]}, "
          f"{[c.status for c in certs]}")
    print(f"  forward passes: one stream per case {one_stream}; a stream per requirement {alone}")


def draws_to_a_decision() -> list[dict]:
    """Forward passes against the samples the decision used: a coin-flip model (p_A = 1/2) at p* = 0.96 and 0.9996,
    and the demo guard on its six-radius case, at the adapters' own batch sizes (64 and the guard's 512)."""
    from statistics import NormalDist

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian
    from certkit.oracles import LabelOracle
    from certkit.testing import CoinFlip

    rows = []
    for batch in (64, 512):
        model = TorchClassifier(CoinFlip(), ["dark", "bright"], lambda t: [2 + len(w) % 8 for w in t.split()], vocab_size=10,
                                special_ids=[0, 1], batch_size=batch)
        for p_star in (0.96, 0.9996):
            radius = 0.5 * NormalDist().inv_cdf(p_star)  # p* = Phi(radius / sigma) at threshold 1/2
            s = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), seed=0)
            cert = s.certify(Case("coin", "pick it up", np.full((3, 8, 8), 0.5, dtype=np.float32)), radius=radius,
                             outcome="bright", n_max=100_000)
            rows.append({"model": f"coin flip, batch {batch}", "p_star": round(cert.p_star, 4), "status": cert.status, "n": cert.n,
                         "forward": cert.timings.get("forward_samples", 0), "batch": cert.timings.get("batch_size")})
    for row in rows:
        print(f"{row['model']:<22} p* = {row['p_star']:<7} {row['status']:<14} n = {row['n']:<6} forward passes {row['forward']:<6} "
              f"(batch used {row['batch']})")
    return rows


def main(argv=None) -> dict:
    from bench.bench_sequential import simulate as simulate_grid

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--draws", action="store_true", help="only the forward passes a decision costs (coin flip, demo guard)")
    args = ap.parse_args(argv)
    if args.draws:
        draws_to_a_decision()
        six_requirements_on_one_case()
        return {}
    rng = np.random.default_rng(0)
    print(f"alpha = {ALPHA}, n_max = {N_MAX}, {args.replicates} replicates per cell; ratio = mean n / Wald limit")
    print(f"{'p*':>5} {'p_A':>5} {'Wald':>8} | {'mixture n':>9} {'ratio':>6} {'right':>6} | {'old n':>8} {'ratio':>6} {'right':>6}")
    ratios = {"mixture": [], "old": []}
    for p_star, p_true in cells():
        wald = math.log(1 / ALPHA) / kl(p_true, p_star)
        want = "certified" if p_true > p_star else "not certified"
        row = []
        for name, run in (("mixture", lambda: MixtureTest(p_star, ALPHA, N_MAX).simulate(p_true, args.replicates, rng)),
                          ("old", lambda: simulate_grid(p_true, SequentialTest(p_star, ALPHA, N_MAX), args.replicates, rng))):
            decision, used = run()
            ratios[name].append(used.mean() / wald)
            row.append(f"{used.mean():>9.1f} {used.mean() / wald:>6.2f} {(decision == want).mean():>6.1%}")
        print(f"{p_star:>5} {p_true:>5.2f} {wald:>8.1f} | {row[0]} | {row[1]}", flush=True)
    summary = {name: (float(np.exp(np.mean(np.log(r)))), float(max(r))) for name, r in ratios.items()}
    for name, (geo, worst) in summary.items():
        print(f"{name}: geometric-mean ratio {geo:.3f}, largest {worst:.2f}")
    six_requirements_on_one_case()
    return summary


if __name__ == "__main__":
    main()
