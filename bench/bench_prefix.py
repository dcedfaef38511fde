"""Tokens and time saved by stopping each sample once the oracle's label is decided (issue 30.2), on a length mix.

``python -m bench.bench_prefix [--n 256] [--repeats 2] [--new-tokens 64] [--batch 32] [--threads 1] [--demo]``

The model: :func:`certkit.testing.tiny_llava` with a word tokenizer over :data:`certkit.testing.WORDS` (36 tokens with
the specials, among them ``refuse``, ``I`` and ``cannot``), sampling at temperature 1. Its random weights give nearly
uniform next-word probabilities; a bias on the LM head (the model's own prior, set per regime) gives each step
probability about ``p_refuse`` of the word ``refuse`` and ``p_end`` of ``</s>``. Two regimes, as a refusal audit has
both kinds of prompt:

* ``refusing`` (a harmful prompt): ``refuse`` about 0.15 a step, ``</s>`` 0.02: most answers refuse within a few
  words, a few end first or run on;
* ``complying`` (a benign prompt): ``refuse`` 0.002, ``</s>`` 0.04: answers of about 25 words on average, many cut
  at ``--new-tokens``, a few refused somewhere.

``--demo`` instead runs the demo audit (``python -m certkit audit``, no count cache, no report) twice, with
``CERTKIT_EARLY_STOP=1`` and ``=0``, and fails unless every certificate is the same in both but for its timings; it
prints the generated tokens (the sum of ``timings.generated_tokens``) and the wall time of each run.

The oracle is :meth:`KeywordOracle.refusal`. Each repeat runs, per regime, ``Smoothed.frontier`` of ``refused`` on
``--n`` samples of a new case (its own id and pixels, so no repeat reads a stream an earlier one drew) twice, with early
stopping off and on, in alternating order, each with a new ``Smoothed`` and no cache. The bench fails unless both arms
ran ``--n`` forward passes and got the same label counts (the exactness the oracle's contract promises). It prints per
arm the generated tokens (``timings.generated_tokens``: tokens generated while a sample was live, up to its end of
sequence, its decision or the cap), the computed tokens (the adapter's ``computed_tokens``: a batch runs until its last
sample ends, every row computed at every step), the wall time and this process's CPU time (which other processes'
load on a shared machine does not inflate; with one torch thread it is the work done), and the ratios on over off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from certkit import Case, Smoothed
from certkit.models import VisionLanguageModel
from certkit.noise import Gaussian
from certkit.oracles import KeywordOracle
from certkit.testing import WORDS, tiny_llava

#: regime -> (p_refuse, p_end): the per-step probabilities the LM head's bias aims at (module docstring)
REGIMES = {"refusing": (0.15, 0.02), "complying": (0.002, 0.04)}


def build(new_tokens: int, batch: int, p_refuse: float, p_end: float) -> VisionLanguageModel:
    """The sampling tiny LLaVA over the test vocabulary, its LM head biased towards ``refuse`` and ``</s>`` (module
    docstring): log(p / q) on those two words, q the share each other token gets of the rest."""
    model, processor = tiny_llava(seed=0, words=WORDS, train_tokenizer=False)
    tok = processor.tokenizer
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    q = (1.0 - p_refuse - p_end) / (head.out_features - 2)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[tok.convert_tokens_to_ids("refuse")] = float(np.log(p_refuse / q))
        biased.bias[tok.eos_token_id] = float(np.log(p_end / q))
    model.lm_head = biased
    return VisionLanguageModel(model, processor, max_new_tokens=new_tokens, batch_size=batch, do_sample=True, temperature=1.0)


def arm(adapter, oracle, case: Case, seed: int, n: int, early: bool) -> dict:
    """One ``frontier`` of ``refused`` on ``n`` samples, early stopping ``early``: its label counts, tokens and time."""
    smoothed = Smoothed(adapter, oracle, image=Gaussian(0.5), seed=seed, early_stop=early)
    computed = adapter.computed_tokens
    t0, c0 = time.perf_counter(), time.process_time()
    cert = smoothed.frontier(case, max_edits=0, outcome="refused", n=n)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if cert.timings.get("forward_samples") != n:
        raise SystemExit(f"bench_prefix: the {'on' if early else 'off'} arm ran {cert.timings.get('forward_samples')} forward "
                         f"passes for n={n}")
    return {"counts": cert.label_counts, "tokens": int(cert.timings["generated_tokens"]),
            "computed": adapter.computed_tokens - computed, "wall": wall, "cpu": cpu}


def _certificates(path: Path) -> dict:
    """nodeid -> (status, its certificates without their timings) of a results.json."""
    doc = json.loads(path.read_text())
    return {r["nodeid"]: (r["status"], [{k: v for k, v in c.items() if k != "timings"} for c in r.get("certificates") or []])
            for r in doc["results"]}


def _generated(path: Path) -> int:
    doc = json.loads(path.read_text())
    return sum(int(c.get("timings", {}).get("generated_tokens", 0)) for r in doc["results"] for c in r.get("certificates") or [])


def demo() -> dict:
    """The demo audit with and without early stopping (module docstring): ``{"on": ..., "off": ...}`` with each run's
    generated tokens and wall time."""
    out = Path(tempfile.mkdtemp(prefix="certkit-prefix-"))
    res = {}
    for arm, flag in (("on", "1"), ("off", "0")):
        env = {**os.environ, "CERTKIT_EARLY_STOP": flag, "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "certkit", "audit", "--certkit-cache-dir", "none", "--certkit-json",
                              str(out / f"{arm}.json"), "--certkit-report", "none", "--certkit-history", "none", "-q",
                              "-p", "no:randomly"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if run.returncode not in (0, 1) or not (out / f"{arm}.json").is_file():
            raise SystemExit(f"bench_prefix: the demo audit ({arm}) failed with exit status {run.returncode}:\n"
                             f"{run.stdout[-2000:]}{run.stderr[-2000:]}")
        res[arm] = {"tokens": _generated(out / f"{arm}.json"), "wall": wall, "certificates": _certificates(out / f"{arm}.json")}
    if res["on"]["certificates"] != res["off"]["certificates"]:
        differ = [k for k in res["on"]["certificates"] if res["on"]["certificates"][k] != res["off"]["certificates"].get(k)]
        raise SystemExit(f"bench_prefix: the demo audit's certificates differ with early stopping: {differ[:5]}")
    n = sum(len(c) for _, c in res["on"]["certificates"].values())
    print(f"demo audit: {len(res['on']['certificates'])} requirements, {n} certificates, the same with and without early stopping "
          f"but for timings; generated tokens on {res['on']['tokens']:,} off {res['off']['tokens']:,}; wall on "
          f"{res['on']['wall']:.1f} s off {res['off']['wall']:.1f} s")
    return res


def main(argv=None) -> dict:
    """Run the bench (module docstring); returns ``{regime: {"off": [...], "on": [...]}}``, one entry per repeat and arm."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="samples per arm (a multiple of 32)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--demo", action="store_true", help="compare the demo audit with and without early stopping instead")
    args = ap.parse_args(argv)
    if args.demo:
        return demo()
    torch.set_num_threads(args.threads)
    oracle = KeywordOracle.refusal()
    print(f"tiny LLaVA over {len(WORDS)} words, sampling, max_new_tokens={args.new_tokens}, batch {args.batch}, n={args.n} per arm, "
          f"{args.repeats} repeats, {args.threads} torch thread(s); oracle {oracle.fingerprint}")
    res: dict = {}
    for regime, (p_refuse, p_end) in REGIMES.items():
        adapter = build(args.new_tokens, args.batch, p_refuse, p_end)
        res[regime] = {"off": [], "on": []}
        for r in range(args.repeats):
            image = np.random.default_rng(r).random((3, 32, 32), dtype=np.float32)
            case = Case(f"prefix-{regime}-{r}", "pick up the red cube", image)
            order = (False, True) if r % 2 == 0 else (True, False)
            got = {early: arm(adapter, oracle, case, r, args.n, early) for early in order}
            if got[True]["counts"] != got[False]["counts"]:
                raise SystemExit(f"bench_prefix: {regime}, repeat {r}: label counts differ with early stopping: "
                                 f"{got[True]['counts']} vs {got[False]['counts']} without")
            for early in (False, True):
                res[regime]["on" if early else "off"].append(got[early])
            off, on = got[False], got[True]
            print(f"{regime} repeat {r}: labels {off['counts']}; generated tokens/sample off {off['tokens'] / args.n:.1f} "
                  f"on {on['tokens'] / args.n:.1f} ({on['tokens'] / off['tokens']:.3f}); computed tokens/sample off "
                  f"{off['computed'] / args.n:.1f} on {on['computed'] / args.n:.1f} ({on['computed'] / off['computed']:.3f}); "
                  f"wall off {off['wall']:.2f} s on {on['wall']:.2f} s ({on['wall'] / off['wall']:.3f}); "
                  f"CPU off {off['cpu']:.2f} s on {on['cpu']:.2f} s ({on['cpu'] / off['cpu']:.3f})")
    for key in ("tokens", "computed", "wall", "cpu"):
        per_regime = {regime: statistics.median(on[key] / off[key] for on, off in zip(arms["on"], arms["off"]))
                      for regime, arms in res.items()}
        both = statistics.median(sum(arms["on"][r][key] for arms in res.values()) / sum(arms["off"][r][key] for arms in res.values())
                                 for r in range(args.repeats))
        print(f"median on/off, {key}: " + ", ".join(f"{regime} {v:.3f}" for regime, v in per_regime.items()) + f", both regimes {both:.3f}")
    return res


if __name__ == "__main__":
    main()
