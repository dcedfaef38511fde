"""The certify path's overhead over the bare adapter (issue 30.3), as a ratio measured in one run.

``python -m bench.bench_overhead [--shape small] [--mode generate label] [--kernels image hybrid] [--repeats 4] [--n 64]
[--threads 1] [--profile]``

``bench_llava7b``'s randomly initialised LLaVA of the ``small`` shape (39.4 M parameters, here in float32: a CLIP tower at
112 px and a Llama text tower; ``tiny`` for a smoke run) on the CPU, in generation mode (``--new-tokens`` tokens per sample, the
refusal oracle) and in label mode (one forward pass, two label words' logits at the last position, a label oracle).
Each repeat times, in turn and in alternating order so that a change in the machine's load hits both alike:

* **bare**: ``adapter.run`` alone on ``--n`` noisy samples of the repeat's case, in batches of ``--batch``; the noise
  is drawn before the timer starts;
* **certify**: ``Smoothed.certify`` of one requirement on the same case, end to end (encoding, noise, the model, the
  oracle, the sequential test, the certificate), with a new ``Smoothed`` seeded by the repeat and no count cache.

Every repeat works on a new case (its own id and pixels), so no repeat reads a stream an earlier one drew. Samples per
second are the forward passes counted at ``adapter.run`` over the wall time, and over this process's CPU time (which the
load of other processes on a shared machine does not inflate; with one torch thread it is the work done); the bench
fails unless the bare count equals ``--n``, the certify count equals the certificate's ``timings.forward_samples`` and
every bare sample gets the requirement's outcome. The radius is chosen so that a requirement whose every sample agrees
needs a little under ``--n`` samples. The ratio is certify's samples/s over bare's, per repeat; the bench prints each
and their median. ``--profile`` prints where certify's time went under cProfile (it slows certify alone: its ratios
are not the measurement).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import statistics
import time

import numpy as np
import torch

SIGMA = 0.5
#: text noise of the hybrid kernels: high enough that one token edit leaves room for an image radius (the timing does
#: not depend on it: every editable token is drawn either way)
BETA = 0.9


def build(shape: str, mode: str, batch: int, new_tokens: int):
    """The adapter around bench_llava7b's randomly initialised LLaVA of ``shape`` in float32 on the CPU, and its parameter
    count. In label mode both label words' rows of the LM head are zeroed: their logits tie, argmax takes the first label
    (``safe``), and every sample agrees, as every generated answer does (random weights never refuse)."""
    from bench.bench_llava7b import LABELS
    from bench.bench_llava7b import build as build_llava

    adapter, params = build_llava(shape, "cpu", batch, new_tokens, labels=LABELS if mode == "label" else None, dtype=torch.float32)
    if mode == "label":
        with torch.no_grad():
            adapter.model.lm_head.weight[adapter.tokenizer.convert_tokens_to_ids(list(LABELS.values()))] = 0.0
    return adapter, params


def count_forward(adapter) -> list[int]:
    """Wrap ``adapter.run`` (keeping its signature's ``encoded``) to count the samples it is given; returns the counter."""
    real, counter = adapter.run, [0]

    def run(ids, images, seed=0, *, encoded):
        counter[0] += int(ids.shape[0])
        return real(ids, images, seed, encoded=encoded)

    adapter.run = run
    return counter


def radius_for(n: int, alpha: float, text=None, edits: int = 0) -> float:
    """The image radius at sigma ``SIGMA`` (with ``edits`` under the ``text`` kernel) whose requirement needs about ``n``
    samples when every sample agrees (0 where the edits alone need more)."""
    from certkit import bounds
    from certkit.noise import Gaussian
    from certkit.sequential import MixtureTest

    def need(r):
        p_star = float(bounds.required_p_a(Gaussian(SIGMA), r, text, edits, 0.5))
        if not 0 < p_star < 1:
            return math.inf
        first = MixtureTest(p_star, alpha, 100 * n).min_samples_to_certify()
        return math.inf if first is None else first

    lo, hi = 0.0, 3.0 * SIGMA
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if need(mid) <= n else (lo, mid)
    return lo


def case_of(adapter, tag: str, repeat: int, prompt: str):
    """The repeat's own case: a new id and new pixels."""
    from certkit import Case

    size = adapter.model.config.vision_config.image_size
    pixels = np.random.default_rng(repeat).uniform(0.2, 0.8, (3, size, size)).astype(np.float32)
    return Case(f"overhead-{tag}-{repeat}", prompt, pixels)


def bare(adapter, counter, case, n: int, repeat: int, text) -> tuple[float, list[str]]:
    """Samples/s of ``adapter.run`` alone on ``n`` noisy samples of ``case`` (noise drawn before the timer), and the outputs."""
    from certkit.noise import Gaussian
    from certkit.sampling import noisy_images, noisy_token_ids

    enc = adapter.encode(case)
    gen = torch.Generator().manual_seed(repeat)
    b = adapter.batch_size
    batches = [(noisy_token_ids(enc.ids, enc.editable, text, b, gen, adapter.alphabet, adapter.mask_id),
                noisy_images(enc.image, Gaussian(SIGMA), b, gen)) for _ in range(n // b)]
    outputs, before = [], counter[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for i, (ids, images) in enumerate(batches):
        outputs += adapter.run(ids, images, i, encoded=enc)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if counter[0] - before != n:
        raise AssertionError(f"bare pass claimed {n} samples but ran {counter[0] - before} forward passes")
    return (n / wall, n / cpu), outputs


def certify(adapter, counter, oracle, case, outcome: str, radius: float, repeat: int, text, edits: int, n_max: int, profile=None):
    """Samples/s of one ``Smoothed.certify`` end to end (a new Smoothed, no cache), and its certificate."""
    from certkit import Smoothed
    from certkit.noise import Gaussian

    smoothed = Smoothed(adapter, oracle, image=Gaussian(SIGMA), text=text, seed=repeat)
    before = counter[0]
    if profile is not None:
        profile.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    cert = smoothed.certify(case, radius=radius, edits=edits, outcome=outcome, n_max=n_max)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profile is not None:
        profile.disable()
    ran = counter[0] - before
    if ran != cert.timings["forward_samples"] or cert.cached or ran < cert.n:
        raise AssertionError(f"certify ran {ran} forward passes, its certificate claims {cert.timings['forward_samples']} "
                             f"(n = {cert.n}, cached {cert.cached})")
    return (ran / wall, ran / cpu), cert


def measure(args, mode: str, kernels: str) -> dict:
    """Interleaved bare and certify repeats of one mode and kernel pair: their samples/s and ratios."""
    from certkit.noise import UniformReplace
    from certkit.oracles import KeywordOracle, LabelOracle

    adapter, params = build(args.shape, mode, args.batch, args.new_tokens)
    counter = count_forward(adapter)
    text = UniformReplace(BETA, adapter.alphabet.numel()) if kernels == "hybrid" else None
    edits = 1 if text is not None else 0
    oracle = LabelOracle(["safe", "unsafe"]) if mode == "label" else KeywordOracle.refusal()
    outcome = "safe" if mode == "label" else "complied"  # random weights never refuse; label mode ties to the first label
    prompt = " ".join(f"w{i * 37 % 400 + 3}" for i in range(40))  # a 40-token user prompt
    radius = radius_for(args.n - 4, 0.01, text, edits)  # a little under n: p_test sits just above p*
    warm = case_of(adapter, f"{mode}-{kernels}-warm", 10_000, prompt)
    bare(adapter, counter, warm, adapter.batch_size, 10_000, text)  # one untimed batch: first-call costs
    profile = cProfile.Profile() if args.profile else None
    rows = []
    for r in range(args.repeats):
        case = case_of(adapter, f"{mode}-{kernels}", r, prompt)
        order = ("bare", "certify") if r % 2 == 0 else ("certify", "bare")
        got = {}
        for arm in order:
            if arm == "bare":
                (got["bare"], got["bare_cpu"]), outputs = bare(adapter, counter, case, args.n, r, text)
                if set(oracle(outputs)) != {outcome}:  # the premise of the radius: every sample agrees
                    raise AssertionError(f"the bare pass's labels are {sorted(set(oracle(outputs)))}, not all {outcome!r}")
            else:
                (got["certify"], got["certify_cpu"]), cert = certify(adapter, counter, oracle, case, outcome, radius, r, text, edits,
                                                                     args.n_max, profile)
                got["n"], got["forward"], got["status"] = cert.n, cert.timings["forward_samples"], cert.status
        got["ratio"], got["ratio_cpu"] = got["certify"] / got["bare"], got["certify_cpu"] / got["bare_cpu"]
        rows.append(got)
    out = {"mode": mode, "kernels": kernels, "params": params, "radius": radius, "edits": edits, "rows": rows,
           "median_ratio": statistics.median(g["ratio"] for g in rows), "median_ratio_cpu": statistics.median(g["ratio_cpu"] for g in rows)}
    if profile is not None:
        out["profile"] = profile
    return out


def print_profile(profile: cProfile.Profile, limit: int = 25) -> None:
    """The functions certify spent its time in (cumulative), model code and certkit code apart."""
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(limit)
    print(stream.getvalue())
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("tottime").print_stats("certkit", limit)
    print(stream.getvalue())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=("small", "tiny"), default="small", help="bench_llava7b's shapes: small (39.4 M), tiny")
    ap.add_argument("--mode", nargs="+", choices=("generate", "label"), default=["generate", "label"])
    ap.add_argument("--kernels", nargs="+", choices=("image", "hybrid"), default=["image"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--n", type=int, default=64, help="samples per bare pass (a multiple of --batch); the radius is chosen for it")
    ap.add_argument("--n-max", type=int, default=2048, help="the certify requirement's n_max")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the CPU-time ratio is the work done)")
    ap.add_argument("--profile", action="store_true", help="print where certify's time went (cProfile)")
    args = ap.parse_args(argv)
    if args.n % args.batch:
        ap.error("--n must be a multiple of --batch")
    torch.set_num_threads(args.threads)
    print(f"bench_overhead: {args.shape} LLaVA, float32 on the CPU, {args.threads} thread(s), batch {args.batch}, {args.new_tokens} new "
          f"tokens when generating, {args.n} samples per bare pass, {args.repeats} interleaved repeats; load {os.getloadavg()[0]:.2f}")
    results = []
    for mode in args.mode:
        for kernels in args.kernels:
            res = measure(args, mode, kernels)
            results.append(res)
            print(f"\n{mode}, {kernels} noise ({res['params'] / 1e6:.1f} M parameters; certify at radius {res['radius']:.4f}, "
                  f"{res['edits']} edit(s)):")
            print(f"{'repeat':>6} {'bare/s':>8} {'certify/s':>9} {'ratio':>6} {'bare/cpu-s':>10} {'certify/cpu-s':>13} {'ratio':>6} "
                  f"{'n':>5} {'forward':>7} status")
            for i, g in enumerate(res["rows"]):
                print(f"{i:>6} {g['bare']:>8.2f} {g['certify']:>9.2f} {g['ratio']:>6.3f} {g['bare_cpu']:>10.2f} {g['certify_cpu']:>13.2f} "
                      f"{g['ratio_cpu']:>6.3f} {g['n']:>5} {g['forward']:>7} {g['status']}")
            print(f"median ratio certify / bare: {res['median_ratio']:.3f} (wall clock), "
                  f"{res['median_ratio_cpu']:.3f} (this process's CPU time)")
            if "profile" in res:
                print_profile(res["profile"])
    print(f"\nload after: {os.getloadavg()[0]:.2f}")
    print("ratio = certify's forward passes per second / bare adapter.run's, over wall-clock time and over this process's CPU time "
          "(which other processes' load does not inflate); forward passes counted at adapter.run and checked against the samples claimed")
    return results


if __name__ == "__main__":
    main()
