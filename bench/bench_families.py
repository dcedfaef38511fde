"""Per VLM family (tiny random checkpoints of certkit.testing.families): smoothed samples/s against the raw model.

For each family that the installed transformers (and torchvision, where needed) can run, on one case
(64x80 image, a 6-word prompt, image and text noise), the same noisy samples are timed three ways, best of
``--repeats``, interleaved:

* ``raw generate``: the model's ``generate`` alone on processor outputs prepared outside the timer;
* ``raw + processor``: what a user pays to run the model on those noisy samples, processor included;
* ``smoothed``: ``Smoothed.frontier`` end to end (noise, processor, model, oracle, counting), no cache.

``overhead`` is smoothed against ``raw + processor``: the cost of certkit itself. Every repeat does the work it times:
each smoothed pass is a fresh ``Smoothed`` on its own stream, and every pass fails unless the model ran on every sample
it claims.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch


def _families() -> list[str]:
    """The families this environment can build (those needing torchvision where it imports)."""
    from certkit.testing.families import CPU_FAMILIES, TORCHVISION_FAMILIES, torchvision_ok

    return CPU_FAMILIES + (TORCHVISION_FAMILIES if torchvision_ok() else [])


def measure(name: str, n: int, batch: int, new_tokens: int, repeats: int) -> dict:
    from bench.bench_engine import _check_count
    from certkit import Case, Smoothed
    from certkit.models import VisionLanguageModel
    from certkit.noise import Gaussian, UniformReplace
    from certkit.oracles import KeywordOracle
    from certkit.sampling import noisy_images, noisy_token_ids
    from certkit.testing import families as F

    with tempfile.TemporaryDirectory() as tmp:
        F.build(name, tmp)
        adapter = VisionLanguageModel.from_pretrained(tmp, max_new_tokens=new_tokens, batch_size=batch, **F.SETTINGS.get(name, {}))
    image = np.random.default_rng(0).random((3, 64, 80), dtype=np.float32)
    case = Case("bench", "pick up the red cube please", image)
    enc = adapter.encode(case)
    text, noise = UniformReplace(0.1, adapter.alphabet.numel()), Gaussian(0.25)
    gen = torch.Generator(device=enc.ids.device).manual_seed(1)  # noise is drawn where the case lives (a CPU generator cannot draw on CUDA)
    batches = [(noisy_token_ids(enc.ids, enc.editable, text, batch, gen, adapter.alphabet), noisy_images(enc.image, noise, batch, gen))
               for _ in range(n // batch)]
    prepared = [adapter.model_inputs(enc, ids, imgs) for ids, imgs in batches]
    kwargs = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=adapter.tokenizer.pad_token_id)
    oracle = KeywordOracle.refusal()
    raw, raw_proc, smooth = [], [], []
    real_run, forward = adapter.run, [0]

    def counted_run(ids, *args, **kw):
        forward[0] += ids.shape[0]
        return real_run(ids, *args, **kw)

    with torch.inference_mode():
        adapter.model.generate(**prepared[0], **kwargs)  # warm-up
        for repeat in range(repeats):
            rows = 0
            t0 = time.perf_counter()
            for inputs in prepared:
                adapter.model.generate(**inputs, **kwargs)
                rows += inputs["input_ids"].shape[0]
            raw.append(n / (time.perf_counter() - t0))
            _check_count(f"{name} raw generate, repeat {repeat}", rows, n)
            rows = 0
            t0 = time.perf_counter()
            for ids, imgs in batches:
                adapter.model.generate(**adapter.model_inputs(enc, ids, imgs), **kwargs)
                rows += ids.shape[0]
            raw_proc.append(n / (time.perf_counter() - t0))
            _check_count(f"{name} raw + processor, repeat {repeat}", rows, n)
            smoothed = Smoothed(adapter, oracle, image=noise, text=text, seed=1_000 + repeat)  # a fresh stream each repeat
            forward[0] = 0
            adapter.run = counted_run
            try:
                t0 = time.perf_counter()
                cert = smoothed.frontier(case, max_edits=1, outcome="complied", n=n)
                smooth.append(forward[0] / (time.perf_counter() - t0))
            finally:
                del adapter.run
            _check_count(f"{name} smoothed, repeat {repeat}", forward[0], cert.timings.get("forward_samples", 0))
            _check_count(f"{name} smoothed samples, repeat {repeat}", forward[0], n)
    return {"raw": max(raw), "raw_processor": max(raw_proc), "smoothed": max(smooth)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("families", nargs="*", help="family names (default: every one that runs here)")
    ap.add_argument("--n", type=int, default=256, help="samples per timed pass (a multiple of --batch)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = _families()
    names = args.families or names
    print(f"torch {torch.__version__}, 1 thread; n = {args.n}, batch {args.batch}, {args.new_tokens} new tokens, best of {args.repeats}")
    print(f"{'family':<16} {'raw generate':>12} {'raw + proc':>11} {'smoothed':>9} {'overhead':>9}")
    out = {}
    for name in names:
        m = measure(name, args.n, args.batch, args.new_tokens, args.repeats)
        out[name] = m
        print(f"{name:<16} {m['raw']:>12.1f} {m['raw_processor']:>11.1f} {m['smoothed']:>9.1f} "
              f"{m['raw_processor'] / m['smoothed'] - 1:>8.1%}", flush=True)
    print("samples/s; overhead = raw + processor against smoothed (certkit's own cost: noise, oracle, counting)")
    return out


if __name__ == "__main__":
    main()
