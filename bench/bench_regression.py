"""False and real regressions against a baseline: the rule of :mod:`certkit.regression` on a fast model.

``python -m bench.bench_regression [--seeds 20] [--stopped 300]``

The model is a :class:`~certkit.models.TorchClassifier` that says "bright" when the mean of its 3x2x2 image is
above 0.5; under Gaussian image noise of sigma 0.25 the mean moves by N(0, 0.25^2 / 12), so a case whose pixels
all equal ``0.5 + 0.25 / sqrt(12) * Phi^-1(p)`` has ``p_A = p`` exactly: the knob that sets p_A. A changed model
moves its decision threshold for one case (told apart by its prompt's last word) so that the case's p_A becomes the
new value; the cases themselves never change (a case whose content changed is another event, whose counts
:func:`certkit.regression.compare` does not compare). One audit (``MIX``)
is a realistic mix through :class:`certkit.Smoothed`: certify-mode requirements far above p* (decided after tens
of samples), near p* (thousands, some inconclusive at n_max = 10,000), one below p*, two requirements sharing a
case's stream, and report-mode frontiers with n = 200; alpha = 0.01, tau = 1/2, image noise only.

(a) the same model under seeds 1..20 against the seed-0 baseline: runs with any regression under the shipped rule
    (target: at most alpha of them, so 0 of 20 at alpha = 0.01) and under the old fixed tolerances (0.02 on the
    p_A lower bound, 0.05 on the radius), the spread of the per-requirement p-values, and how often seeds alone
    move a requirement from certified to inconclusive.
(b) a model whose p_A on one case fell by 0.05: the report-mode case at n = 200, 1,000 and 5,000, a certify-mode
    case far above p* and one near p*: flagged or not, with the p-values, over seeds 1..5.
``--stopped R``: R pairs of Bernoulli streams with equal p_A stopped by the certify test (alpha 0.01), the share
    that Fisher's exact test and the anytime-valid test flag at level 0.01: why certify-mode counts get the latter.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy.stats import norm

from certkit import Case, Smoothed
from certkit.models import TorchClassifier
from certkit.noise import Gaussian
from certkit.oracles import LabelOracle
from certkit.regression import compare, drop_p_value
from certkit.results import implied_radius
from certkit.sequential import MixtureTest

SIGMA, PIXELS, ALPHA, N_MAX = 0.25, 12, 0.01, 10_000

# (requirement name, case, mode, p* for certify or n for the frontier); the cases' p_A are in P_A
MIX = [
    ("far_p999_pstar90", "a", "certify", 0.90),
    ("far_p95_pstar80", "b", "certify", 0.80),
    ("near_p95_pstar93", "b", "certify", 0.93),  # shares case b's stream with the one above
    ("near_p74_pstar70", "c", "certify", 0.70),
    ("near_p72_pstar70", "d", "certify", 0.70),
    ("below_p60_pstar70", "e", "certify", 0.70),
    ("frontier_p97_n200", "f", "frontier", 200),
    ("frontier_p99_n200", "g", "frontier", 200),
    ("frontier_p90_n200", "h", "frontier", 200),
    ("frontier_p80_n200", "i", "frontier", 200),
]
P_A = {"a": 0.999, "b": 0.95, "c": 0.74, "d": 0.72, "e": 0.60, "f": 0.97, "g": 0.99, "h": 0.90, "i": 0.80}


def _token(word: str) -> int:
    return 2 + len(word) % 20


class Bright(torch.nn.Module):
    """'bright' iff the image's mean exceeds 0.5, plus ``shift[t]`` for a prompt whose last token is ``t``."""

    def __init__(self, shift: dict[int, float] | None = None):
        super().__init__()
        self.register_buffer("shift", torch.zeros(24))
        for token, delta in (shift or {}).items():
            self.shift[token] = delta

    def forward(self, ids, images):
        s = images.mean(dim=(1, 2, 3)) - 0.5 - self.shift[ids[:, -1]]
        return torch.stack([-s, s], 1)


def model(p_a: dict | None = None) -> TorchClassifier:
    """The model; ``p_a`` (case -> p_A) moves its threshold for those cases so that their p_A is that value."""
    scale = SIGMA / math.sqrt(PIXELS)
    shift = {_token(_last_word(c)): scale * float(norm.ppf(P_A[c]) - norm.ppf(p)) for c, p in (p_a or {}).items()}
    return TorchClassifier(Bright(shift), ["dark", "bright"], lambda t: [_token(w) for w in t.split()], vocab_size=24,
                           special_ids=[0, 1], mask_id=0, batch_size=1024, device="cpu")


def _last_word(name: str) -> str:
    return "x" * (ord(name) - ord("a") + 1)  # a distinct length, so a distinct last token, per case


def case(name: str) -> Case:
    value = 0.5 + SIGMA / math.sqrt(PIXELS) * float(norm.ppf(P_A[name]))
    return Case(name, f"pick up the {_last_word(name)}", np.full((3, 2, 2), value, dtype=np.float32))


def audit(seed: int, p_a: dict | None = None, mix=MIX, classifier=None) -> dict:
    """One run of ``mix`` at ``seed`` as a results document (``certkit.results/1``), by a model whose p_A on the cases of
    ``p_a`` is that value (the others' are ``P_A``)."""
    smoothed = Smoothed(classifier or model(p_a), LabelOracle(["dark", "bright"]), Gaussian(SIGMA), None, seed=seed)
    results = []
    for name, case_id, mode, value in mix:
        c = case(case_id)
        if mode == "certify":
            cert = smoothed.certify(c, radius=SIGMA * float(norm.ppf(value)), outcome="bright", alpha=ALPHA, n_max=N_MAX)
        else:
            cert = smoothed.frontier(c, outcome="bright", n=int(value), alpha=ALPHA)
        results.append({"nodeid": f"test_mix.py::test[{name}]", "status": cert.status, "certificates": [cert.to_dict()]})
    return {"schema": "certkit.results/1", "run": {"seed": seed, "settings": {"alpha": ALPHA}}, "summary": {}, "results": results}


def old_rule(baseline: dict, current: dict) -> list[str]:
    """The rule this replaces (certkit before issue 21): any status loss, a p_A lower bound 0.02 lower, a radius 0.05 lower."""
    flagged = []
    for b, c in zip(baseline["results"], current["results"]):
        ob, oc = b["certificates"][0], c["certificates"][0]
        r_old, r_new = implied_radius(ob), implied_radius(oc)
        if ((ob["status"] == "certified" and oc["status"] != "certified") or oc["p_a_lower"] < ob["p_a_lower"] - 0.02
                or (math.isfinite(r_old) and r_old > 0 and r_new < r_old - 0.05)):
            flagged.append(b["nodeid"])
    return flagged


def same_model(seeds: int) -> None:
    t0 = time.perf_counter()
    base = audit(0)
    runs_flagged, old_flagged, to_inconclusive, flagged_inconclusive = 0, 0, 0, 0
    p_values = {name: [] for name, *_ in MIX}
    for seed in range(1, seeds + 1):
        cur = audit(seed)
        result = compare(base, cur)
        runs_flagged += bool(result["regressions"])
        old_flagged += bool(old_rule(base, cur))
        for name, *_ in MIX:
            p_values[name].append(result["p_values"][f"test_mix.py::test[{name}]"])
        for b, c in zip(base["results"], cur["results"]):
            if b["status"] == "certified" and c["status"] == "inconclusive":
                to_inconclusive += 1
                flagged_inconclusive += any(r["nodeid"] == b["nodeid"] for r in result["regressions"])
    print(f"(a) same model, seeds 1..{seeds} against the seed-0 baseline ({len(MIX)} requirements, alpha {ALPHA}, Holm):")
    print(f"    runs with any regression: shipped rule {runs_flagged}/{seeds}; old fixed tolerances {old_flagged}/{seeds}")
    print(f"    certified -> inconclusive from seeds alone: {to_inconclusive} requirement-runs, {flagged_inconclusive} flagged")
    print("    baseline (seed 0): " + ", ".join(f"{r['nodeid'].split('[')[1][:-1]} {r['status']} "
                                             f"{r['certificates'][0]['successes']}/{r['certificates'][0]['n']}" for r in base["results"]))
    print("    per-requirement p-values over the seeds (min / median; 1 = the current proportion is not lower):")
    for name, values in p_values.items():
        print(f"      {name:22s} min {min(values):.3g}  median {float(np.median(values)):.3g}  "
              f"(p < 0.05 in {sum(v < 0.05 for v in values)})")
    print(f"    {time.perf_counter() - t0:.1f} s")


def one_case_fell(seeds: int = 5) -> None:
    t0 = time.perf_counter()
    print("(b) p_A on one case fell by 0.05 (the rest of the mix unchanged), current seeds 1..%d against seed 0:" % seeds)
    scenarios = [(f"frontier p_A 0.97 -> 0.92, n = {n}", [(m if m[0] != "frontier_p97_n200" else (m[0], "f", "frontier", n)) for m in MIX],
                  "frontier_p97_n200", {"f": 0.92}) for n in (200, 1000, 5000)]
    scenarios += [("certify p_A 0.95 -> 0.90 at p* 0.80 (and p* 0.93)", MIX, "far_p95_pstar80", {"b": 0.90}),
                  ("certify p_A 0.74 -> 0.69 at p* 0.70", MIX, "near_p74_pstar70", {"c": 0.69})]
    for title, mix, name, change in scenarios:
        base = audit(0, mix=mix)
        flagged, notes = 0, []
        for seed in range(1, seeds + 1):
            cur = audit(seed, change, mix=mix)
            result = compare(base, cur)
            node = f"test_mix.py::test[{name}]"
            regs = {r["nodeid"]: r for r in result["regressions"]}
            flagged += node in regs
            cert = next(r for r in cur["results"] if r["nodeid"] == node)["certificates"][0]
            notes.append(f"{cert['status']} {cert['successes']}/{cert['n']} p={result['p_values'][node]:.2g}"
                         + (" FLAGGED" if node in regs else "")
                         + "".join(f" (also {other.split('[')[1][:-1]}: {r['reasons'][0]})" for other, r in regs.items() if other != node))
        b = next(r for r in base["results"] if r["nodeid"] == f"test_mix.py::test[{name}]")["certificates"][0]
        print(f"    {title}: flagged in {flagged}/{seeds}; baseline {b['status']} {b['successes']}/{b['n']}; current: " + "; ".join(notes))
    print(f"    {time.perf_counter() - t0:.1f} s")


def stopped_counts(pairs: int) -> None:
    """Fixed-n tests are not valid on counts a sequential test stopped: equal p_A, both streams stopped by the
    certify test, the share of pairs each test flags at level 0.01."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(7)
    print(f"--stopped: {pairs} pairs of streams with equal p_A, each stopped by the certify test (alpha 0.01, n_max {N_MAX}):")
    for p_a, p_star in ((0.75, 0.70), (0.72, 0.70), (0.71, 0.70)):
        test = MixtureTest(p_star, ALPHA, N_MAX)
        counts = np.array([test.first_decision(rng.random(N_MAX) < p_a)[:2] for _ in range(2 * pairs)], dtype=float)
        (n0, k0), (n1, k1) = counts[:pairs].T, counts[pairs:].T
        fisher = drop_p_value(k0, n0, k1, n1, fixed_n=True)
        anytime = drop_p_value(k0, n0, k1, n1, fixed_n=False)
        print(f"    p_A {p_a} at p* {p_star}: flagged at 0.01 (0.05) by Fisher {np.mean(fisher <= 0.01):.3f} "
              f"({np.mean(fisher <= 0.05):.3f}), "
              f"by the anytime-valid test {np.mean(anytime <= 0.01):.3f} ({np.mean(anytime <= 0.05):.3f}); median n {int(np.median(n0))}")
    print(f"    {time.perf_counter() - t0:.1f} s")


def cost(rows: int = 1000) -> None:
    """Seconds per requirement of the anytime-valid test (the costly one), over ``rows`` certify-mode pairs whose
    current proportion is lower (the others cost nothing)."""
    rng = np.random.default_rng(3)
    n0, n1 = rng.integers(20, 10_000, rows), rng.integers(20, 10_000, rows)
    k0 = rng.binomial(n0, 0.9)
    k1 = np.minimum(rng.binomial(n1, 0.85), np.floor(k0 * n1 / n0 - 1e-9).astype(int))
    t0 = time.perf_counter()
    p = drop_p_value(k0, n0, k1, n1)
    print(f"cost: the anytime-valid test on {rows} certify-mode pairs (n 20-10,000, current proportion lower): "
          f"{1e3 * (time.perf_counter() - t0) / rows:.1f} ms per requirement ({np.mean(p <= 0.01):.2f} of them at p <= 0.01)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_regression", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds of the unchanged model compared with seed 0 (default 20)")
    ap.add_argument("--stopped", type=int, default=0, metavar="R", help="also simulate R pairs of stopped streams (default: skip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    same_model(args.seeds)
    one_case_fell()
    cost()
    if args.stopped:
        stopped_counts(args.stopped)


if __name__ == "__main__":
    main()
