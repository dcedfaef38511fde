"""Soundness at scale through the full certify path: ``python -m bench.bench_soundness [--requirements N]``.

Every requirement's true p_A sits *exactly* on its boundary p*, so any "certified" is a false
certification. The model is a real, deterministic torch module: class A iff pixel (0, 0, 0) of the
noisy image is below a threshold t. Under certkit's own Gaussian noise, P[A] = Phi((t - x) / sigma)
exactly, so t = x + sigma * Phi^-1(p*) puts p_A on the boundary. The requirements cycle through
tau in {0.5, 0.3, 4.6e-5}, d in {0, 1, 2} (uniform kernel, beta 0.25, V 30; the model ignores the text, so
its p_A is unchanged) and sigma in {0.25, 0.5, 1.0}, at radii chosen so that p* lies in (0.55, 0.999).
Each requirement runs both ways: ``Smoothed.certify`` (sequential, n_max) and ``Smoothed.frontier``
(fixed n, report mode), whose claim at (d, eps) is checked against the same boundary.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch
from scipy.stats import norm

from certkit import Case, Smoothed, bounds
from certkit.errors import RequirementError
from certkit.models import TorchClassifier
from certkit.noise import Gaussian, UniformReplace
from certkit.oracles import LabelOracle

VOCAB = 32


class PixelThreshold(torch.nn.Module):
    """Class 1 ("A") iff the first pixel is below ``threshold``."""

    def __init__(self, threshold: float):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float64))

    def forward(self, ids, images):
        a = (images[:, 0, 0, 0].double() < self.threshold).double()
        return torch.stack([1 - a, a], dim=1)


def requirements(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    grid = list(itertools.product((0.5, 0.3, 4.6e-5), (0, 1, 2), (0.25, 0.5, 1.0)))
    out = []
    for i in range(count):
        tau, d, sigma = grid[i % len(grid)]
        text = UniformReplace(0.25, VOCAB - 2)
        for _ in range(100):
            radius = float(rng.uniform(0.0, 1.5)) * sigma
            p_star = float(bounds.required_p_a(Gaussian(sigma), radius, text if d else None, d, tau))
            if 0.55 < p_star < 0.999:
                break
        else:
            radius, p_star = 0.0, float(bounds.required_p_a(Gaussian(sigma), 0.0, text if d else None, d, tau))
        out.append({"id": f"req-{i}", "tau": tau, "d": d, "sigma": sigma, "radius": radius, "p_star": p_star})
    return out


def run(count: int = 10_000, alpha: float = 0.05, n_max: int = 1_000, n_fixed: int = 500, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    oracle = LabelOracle(["other", "A"])
    tokenize = lambda text: [2 + len(w) % (VOCAB - 2) for w in text.split()]  # noqa: E731
    image = np.full((3, 1, 1), 0.5, dtype=np.float32)
    false_seq = false_fixed = 0
    decided, samples = {"certified": 0, "not certified": 0, "inconclusive": 0, "unreachable": 0}, 0
    t0 = time.perf_counter()
    for req in requirements(count, seed):
        threshold = 0.5 + req["sigma"] * norm.ppf(req["p_star"])
        model = TorchClassifier(PixelThreshold(threshold), ["other", "A"], tokenize, vocab_size=VOCAB, special_ids=[0, 1],
                                mask_id=0, batch_size=1024, device="cpu")
        text = UniformReplace(0.25, VOCAB - 2) if req["d"] else None
        smoothed = Smoothed(model, oracle, image=Gaussian(req["sigma"]), text=text, seed=seed)
        case = Case(req["id"], "pick up the cube", image)
        try:
            cert = smoothed.certify(case, radius=req["radius"], edits=req["d"], outcome="A", alpha=alpha, threshold=req["tau"], n_max=n_max)
        except RequirementError:  # n_max samples cannot certify it even if all agree: refused before sampling, never certified
            decided["unreachable"] += 1
        else:
            decided[cert.status] += 1
            samples += cert.n
            false_seq += cert.certified
        fr = smoothed.frontier(case, max_edits=req["d"], outcome="A", n=n_fixed, alpha=alpha, threshold=req["tau"])
        claimed = float(fr.frontier[req["d"]]) if fr.frontier else -math.inf
        # report mode claims (d, eps) when the frontier reaches eps (strictly beyond it for tau = 1/2)
        false_fixed += (claimed > req["radius"]) if req["tau"] == 0.5 else (claimed >= req["radius"])
    se = math.sqrt(alpha * (1 - alpha) / count)
    return {"requirements": count, "alpha": alpha, "sequential_false_rate": false_seq / count, "fixed_false_rate": false_fixed / count,
            "monte_carlo_se": se, "decisions": decided, "mean_samples": samples / max(1, count - decided["unreachable"]),
            "seconds": time.perf_counter() - t0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requirements", type=int, default=10_000)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args(argv)
    res = run(args.requirements, args.alpha)
    print(f"{res['requirements']} boundary requirements (true p_A = p*), alpha = {res['alpha']}, {res['seconds']:.0f} s:")
    print(f"  sequential certify (n_max 1000): false-certification rate {res['sequential_false_rate']:.4f} "
          f"(alpha + 3 se = {res['alpha'] + 3 * res['monte_carlo_se']:.4f}); decisions {res['decisions']}; "
          f"mean n {res['mean_samples']:.0f}")
    print(f"  fixed n = 500 (report mode): false-certification rate {res['fixed_false_rate']:.4f}")
    return res


if __name__ == "__main__":
    main()
