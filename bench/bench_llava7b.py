"""A LLaVA-1.5-7B-shaped model on a GPU (issue 7): samples/s raw and smoothed, image-only and hybrid noise,
and the time one requirement takes, against the paper's ~156 s (image-only) and ~500 s (hybrid) per
datapoint at n = 10,000.

``python -m bench.bench_llava7b [--batch 64] [--new-tokens 16] [--n 512] [--repeats 2]``: the model is
built from its config with random bf16 weights (nothing is downloaded): CLIP ViT-L/14 at 336 px (576
image tokens), a 2-layer MLP projector and a Llama-2-7B text tower (4096 hidden, 32 layers, vocab 32,064),
with a word-level tokenizer of 32,000 tokens trained in-process, and a 40-token user prompt. Random weights never emit EOS, so every
sample generates exactly ``--new-tokens`` tokens: the timing is that of the worst case, not of short
refusals. ``--shape tiny --device cpu`` runs the same code path with a tiny model (a smoke run); ``--shape small``
(39.4 M parameters: a 4-layer 256-wide vision tower at 112 px, a 6-layer 512-wide text tower, 16,000 words) is the
CPU-sized model (``--dtype float32`` is the default off CUDA). Each of ``--repeats`` passes does the work it times: a
fresh stream per smoothed pass, and every pass fails unless the model ran on every sample it claims
(:func:`bench.bench_engine.throughput`).
Without CUDA (and without ``--device cpu``) it prints why and returns.

``--mode label`` reads the model as a guard: one forward pass per sample, the next-token logits of two label
words at the last position only (``logits_to_keep=1``), no generation. Each row reports the MFU, model FLOPs
utilisation: model FLOPs per sample x samples/s / the device's peak (``--peak-tflops``, else measured with a
large bf16 matmul). Model FLOPs per sample are 2 x (vision tower parameters x its positions + text parameters x
the tokens they process + LM head x the positions it reads): the prompt's tokens, plus ``--new-tokens`` - 1
decoding steps when generating; token embeddings are a lookup, and attention's L^2 term (about 2% at 618 tokens)
is not counted. ``--oom-batch B`` asks for one requirement at batch B and prints the batch the engine settled on
(the certificate's timings), or the out-of-memory error where it has no back-off.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = {
    # vision: hidden, layers, heads, intermediate, image, patch; text: hidden, layers, heads, intermediate
    "7b": dict(v=(1024, 24, 16, 4096, 336, 14), t=(4096, 32, 32, 11008), vocab=32_000),
    "tiny": dict(v=(64, 2, 2, 128, 56, 14), t=(64, 2, 2, 128), vocab=2_000),
    "small": dict(v=(256, 4, 4, 1024, 112, 14), t=(512, 6, 8, 1408), vocab=16_000),
}
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " ASSISTANT:{% endif %}{% endfor %}"
)


#: the label words of ``--mode label`` (two words of the bench tokenizer)
LABELS = {"safe": "w1", "unsafe": "w2"}


def build(shape: str, device: str, batch: int, new_tokens: int, labels: dict | None = None, dtype=torch.bfloat16):
    """A VisionLanguageModel around a randomly initialised LLaVA of the given shape and dtype (label mode with ``labels``)."""
    from certkit.models import VisionLanguageModel
    from certkit.testing import tiny_llava

    s = SHAPES[shape]
    vh, vl, vheads, vi, image, patch = s["v"]
    th, tl, theads, ti = s["t"]
    model, processor = tiny_llava(
        0, words=["USER:", "ASSISTANT:"] + [f"w{i}" for i in range(s["vocab"] - 7)], vocab_size=s["vocab"], split_punctuation=False,
        chat_template=TEMPLATE, image_size=image, patch_size=patch, vision_hidden=vh, vision_layers=vl, vision_heads=vheads,
        vision_intermediate=vi, projection_dim=768, vision_feature_layer=-2, hidden=th, layers=tl, heads=theads, intermediate=ti,
        max_positions=4096, vocab_multiple=64, dtype=dtype, device=device)
    params = sum(p.numel() for p in model.parameters())
    adapter = VisionLanguageModel(model, processor, max_new_tokens=new_tokens, batch_size=batch, labels=labels,
                                  weights_fingerprint=f"random-llava-{shape}-seed0")
    return adapter, params


def flops_per_sample(adapter, prompt_tokens: int, new_tokens: int, label: bool) -> float:
    """Model FLOPs of one sample (see the module docstring): 2 x parameters x the positions each part processes."""
    config = adapter.model.config.vision_config
    positions = (config.image_size // config.patch_size) ** 2 + 1  # patches and the class token
    vision = text = head = 0
    for name, p in adapter.model.named_parameters():
        if "vision_tower" in name:
            vision += p.numel()
        elif "lm_head" in name:
            head += p.numel()
        elif "embed_tokens" not in name:  # an embedding is a lookup, no FLOPs
            text += p.numel()
    tokens = prompt_tokens if label else prompt_tokens + new_tokens - 1
    return 2.0 * (vision * positions + text * tokens + head * (1 if label else new_tokens))


def peak_flops(device: str, size: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of a large bf16 matmul on ``device``, best of ``repeats``: the measured peak MFU is taken against."""
    size = size if device.startswith("cuda") else 1024
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


def oom_step(args, prompt: str) -> dict:
    """One requirement asked at batch ``--oom-batch``: the batch the engine ran at and how many times it backed off
    (the certificate's timings), or the error where the engine has no back-off."""
    import numpy as np

    from certkit import Case, Smoothed
    from certkit.errors import CertkitError
    from certkit.noise import Gaussian
    from certkit.oracles import KeywordOracle

    adapter, _ = build(args.shape, args.device, args.oom_batch, args.new_tokens)
    size = adapter.model.config.vision_config.image_size
    case = Case("oom", prompt, np.full((3, size, size), 0.5, dtype=np.float32))
    smoothed = Smoothed(adapter, KeywordOracle.refusal(), image=Gaussian(0.5), seed=0)
    try:
        cert = smoothed.frontier(case, max_edits=0, outcome="complied", n=args.oom_batch)
    except (torch.OutOfMemoryError, CertkitError) as exc:  # an engine without back-off, or one that gave up
        print(f"oom step: asked batch {args.oom_batch}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return {"asked": args.oom_batch, "error": type(exc).__name__}
    found = {k: v for k, v in cert.timings.items() if "batch" in k or "memory" in k}
    print(f"oom step: asked batch {args.oom_batch}; certificate timings {found or '(no batch field)'}; n = {cert.n}")
    return {"asked": args.oom_batch, **found}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--n", type=int, default=512, help="samples per timed pass (a multiple of --batch)")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes, best reported; each draws a fresh stream")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                    help="weights' dtype (default: bfloat16 on CUDA, else float32)")
    ap.add_argument("--mode", choices=("generate", "label"), default="generate",
                    help="generate answers, or read two label words' logits in one forward pass (a guard)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak TFLOP/s for the MFU (default: measured)")
    ap.add_argument("--oom-batch", type=int, default=None, help="only ask one requirement at this batch and print the batch it ran at")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_llava7b: no CUDA GPU here; skipped (run it on a GPU machine, or --shape tiny --device cpu for a smoke run)")
        return None
    from bench.bench_engine import throughput
    from certkit import Case
    from certkit.noise import Gaussian
    from certkit.oracles import KeywordOracle, LabelOracle

    prompt = " ".join(f"w{i * 37 % 1000}" for i in range(40))  # a 40-token user prompt
    if args.oom_batch is not None:
        return oom_step(args, prompt)
    label = args.mode == "label"
    t0 = time.perf_counter()
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    adapter, params = build(args.shape, args.device, args.batch, args.new_tokens, labels=LABELS if label else None,
                            dtype=getattr(torch, dtype))
    built = time.perf_counter() - t0
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(args.device)
    size = adapter.model.config.vision_config.image_size
    tokens = adapter.encode(Case("t", prompt, torch.zeros(3, size, size).numpy())).ids.numel()
    flops = flops_per_sample(adapter, tokens, args.new_tokens, label)
    what = "label mode (one forward, logits_to_keep=1)" if label else f"{args.new_tokens} new tokens"
    print(f"{args.shape} LLaVA, {params / 1e6:,.1f} M parameters, {dtype}, on {name}; built in {built:.0f} s; batch {args.batch}, "
          f"{what}, {tokens}-token input, {args.n} samples per pass, best of {args.repeats}; {flops / 1e9:,.4g} GFLOP per "
          f"sample, peak {peak / 1e12:.4g} TFLOP/s ({'given' if args.peak_tflops else 'measured, bf16 matmul'})")
    kernels = {"image-only": (Gaussian(0.5), None), "hybrid": (Gaussian(0.5), "uniform")}
    oracle = LabelOracle(list(LABELS)) if label else KeywordOracle.refusal()
    res = throughput(adapter, oracle, kernels, args.n, repeats=args.repeats, prompt=prompt)
    paper = {"image-only": 156.0, "hybrid": 500.0}
    print(f"{'kernels':<11} {'raw clean':>9} {'raw':>8} {'smoothed':>9} {'ratio':>6} {'in-run':>7} {'MFU raw':>8} {'MFU smoothed':>12} "
          f"{'n=10,000':>9} {'paper':>6} {'n=195':>6}")
    for kernel, m in res.items():
        m["mfu_raw"], m["mfu_smoothed"] = m["raw"] * flops / peak, m["smoothed"] * flops / peak
        print(f"{kernel:<11} {m['raw_clean']:>9.1f} {m['raw']:>8.1f} {m['smoothed']:>9.1f} {m['smoothed'] / m['raw']:>6.2f} "
              f"{m['model_share']:>7.2f} {m['mfu_raw']:>8.1%} {m['mfu_smoothed']:>12.1%} {10_000 / m['smoothed']:>8.0f}s "
              f"{paper[kernel]:>5.0f}s {195 / m['smoothed']:>5.1f}s")
    print("samples/s; MFU = model FLOPs x samples/s / peak; n=10,000 = seconds for a fixed-n requirement at the smoothed rate; "
          "n=195 = the sequential test's mean samples per requirement on the demo audit (BENCHMARKS.md)")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return res


if __name__ == "__main__":
    main()
