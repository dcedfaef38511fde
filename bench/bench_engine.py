"""Sampling overhead of the smoothing engine (issue 3), on the CPU with tiny real models.

* smoothed throughput (noise + model + oracle + counting, via ``Smoothed.frontier`` without cache)
  against the raw batched ``generate`` / forward of the same adapter at the same batch size;
* hybrid (text + image noise) against image-only noise;
* peak resident memory for n = 2,000 against n = 20,000 samples (torch classifier, subprocesses).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def _llava(tmp, hidden, layers, image):
    from transformers import LlavaForConditionalGeneration

    from certkit.testing import save_tiny_llava

    path = save_tiny_llava(tmp, image_size=image)
    if hidden != 32 or layers != 2:  # grow the text and vision towers from the same recipe
        model = LlavaForConditionalGeneration.from_pretrained(path)
        cfg = model.config
        cfg.text_config.hidden_size = hidden
        cfg.text_config.intermediate_size = 4 * hidden
        cfg.text_config.num_hidden_layers = layers
        cfg.text_config.num_attention_heads = cfg.text_config.num_key_value_heads = max(2, hidden // 64)
        cfg.vision_config.hidden_size = hidden
        cfg.vision_config.intermediate_size = 4 * hidden
        cfg.vision_config.num_hidden_layers = layers
        cfg.vision_config.num_attention_heads = max(2, hidden // 64)
        torch.manual_seed(0)
        LlavaForConditionalGeneration(cfg).save_pretrained(path)
    return path


def _check_count(what: str, counted: int, claimed: int) -> None:
    """A timed pass must have run the model on every sample it claims: a pass that read labels from a cache or a
    stream kept in memory would time no model at all (issue 30.1)."""
    if counted != claimed:
        raise AssertionError(f"{what}: the model ran on {counted} samples, the pass claims {claimed}: the timing is not of the work")


def throughput(adapter, oracle, kernels, n, repeats=5, prompt="pick up the red cube please"):
    """Samples/s: raw ``adapter.run`` on pre-drawn noisy batches (noise drawn outside the timer) and on the
    clean batch, against ``Smoothed.frontier`` end to end, for each kernel pair. Best of ``repeats``,
    measurements interleaved so that drifts in machine speed hit both alike.

    Every repeat does the work it times: each smoothed pass is a fresh ``Smoothed`` with its own seed (a stream no
    earlier pass drew, no cache), and every pass counts the samples that went through ``adapter.run`` and fails
    unless they equal the samples it claims: ``n`` for the raw passes, the certificate's ``forward_samples`` (``n`` rounded
    up to whole chunks of 32) for the smoothed one, whose rate is of those. The raw passes re-run the model on the same
    pre-drawn inputs, which it computes afresh each time. ``forward`` lists each smoothed repeat's samples."""
    from certkit import Case, Smoothed
    from certkit.noise import UniformReplace
    from certkit.sampling import noisy_images, noisy_token_ids

    crop = getattr(getattr(adapter, "processor", None), "image_processor", None)
    crop = getattr(crop, "crop_size", None) or {}
    shape = (3, crop.get("height", 32), crop.get("width", 32))
    case = Case("bench", prompt, np.full(shape, 0.5, dtype=np.float32))
    enc = adapter.encode(case)
    b = adapter.batch_size
    batches = n // b
    clean = (enc.ids.unsqueeze(0).expand(b, -1).clone(), enc.image.unsqueeze(0).expand(b, *enc.image.shape).clone())
    out = {}
    for label, (image, text) in kernels.items():
        if text == "uniform":
            text = UniformReplace(0.25, adapter.alphabet.numel())
        gen = torch.Generator(device=enc.ids.device).manual_seed(1)
        noisy = [(noisy_token_ids(enc.ids, enc.editable, text, b, gen, adapter.alphabet, adapter.mask_id),
                  noisy_images(enc.image, image, b, gen))
                 for _ in range(batches)]
        run = functools.partial(adapter.run, encoded=enc) if hasattr(adapter, "processor") else adapter.run
        run(*noisy[0], 0)  # warm-up
        raw, raw_clean, smooth, inrun, forwards = [], [], [], [], []
        real_run = adapter.run
        for repeat in range(repeats):
            counted = 0
            t0 = time.perf_counter()
            for ids, imgs in noisy:
                oracle(run(ids, imgs, 0))
                counted += ids.shape[0]
            raw.append(batches * b / (time.perf_counter() - t0))
            _check_count(f"{label} raw, repeat {repeat}", counted, batches * b)
            counted = 0
            t0 = time.perf_counter()
            for _ in range(batches):
                run(*clean, 0)
                counted += clean[0].shape[0]
            raw_clean.append(batches * b / (time.perf_counter() - t0))
            _check_count(f"{label} raw clean, repeat {repeat}", counted, batches * b)
            model_s, forward = [0.0], [0]

            def timed_run(ids, imgs, seed, _real=real_run, **kwargs):
                t = time.perf_counter()
                result = _real(ids, imgs, seed, **kwargs)
                model_s[0] += time.perf_counter() - t
                forward[0] += ids.shape[0]
                return result

            smoothed = Smoothed(adapter, oracle, image=image, text=text, seed=1_000 + repeat)  # a fresh stream each repeat
            adapter.run = timed_run
            try:
                t0 = time.perf_counter()
                cert = smoothed.frontier(case, max_edits=0 if text is None else 1, outcome=oracle.labels[0], n=batches * b, alpha=0.01)
                total = time.perf_counter() - t0
            finally:
                del adapter.run
            _check_count(f"{label} smoothed, repeat {repeat}", forward[0], cert.timings.get("forward_samples", 0))
            if cert.cached or forward[0] < cert.n:
                raise AssertionError(f"{label} smoothed, repeat {repeat}: {forward[0]} forward passes for n = {cert.n} "
                                     f"(cached: {cert.cached})")
            forwards.append(forward[0])
            smooth.append(forward[0] / total)
            inrun.append(model_s[0] / total)
        out[label] = {"raw": max(raw), "raw_clean": max(raw_clean), "smoothed": max(smooth), "model_share": max(inrun),
                      "forward": forwards}
    return out


def noise_only(n: int = 20_000, repeats: int = 7) -> None:
    """Time to draw the noise alone for n samples (3x224x224 image, 40-token prompt), interleaved."""
    from certkit.noise import Gaussian, UniformReplace
    from certkit.sampling import noisy_images, noisy_token_ids

    image = torch.rand(3, 224, 224)
    ids = torch.randint(0, 32_000, (600,))
    editable = torch.zeros(600, dtype=torch.bool)
    editable[560:600] = True
    alphabet = torch.arange(32_000)
    img_t, hyb_t = [], []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        for _ in range(n // 32):
            noisy_images(image, Gaussian(0.5), 32, gen)
        img_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n // 32):
            noisy_images(image, Gaussian(0.5), 32, gen)
            noisy_token_ids(ids, editable, UniformReplace(0.25, 32_000), 32, gen, alphabet)
        hyb_t.append(time.perf_counter() - t0)
    print(f"noise only, {n} samples of a 3x224x224 image and a 600-token input with a 40-token prompt: "
          f"image {min(img_t):.3f} s, image + text {min(hyb_t):.3f} s, hybrid cost {min(hyb_t) / min(img_t):.3f}x")


def memory_child(n: int) -> None:
    import resource

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian, UniformReplace
    from certkit.oracles import LabelOracle
    from certkit.testing import BrightnessClassifier

    model = TorchClassifier(BrightnessClassifier(), ["dark", "bright"], lambda t: [2 + len(w) for w in t.split()],
                            vocab_size=64, special_ids=[0, 1], mask_id=0, batch_size=256)
    s = Smoothed(model, LabelOracle(["dark", "bright"]), image=Gaussian(0.5), text=UniformReplace(0.25, 62), seed=0)
    s.frontier(Case("m", "pick up the red cube", np.full((3, 224, 224), 0.5, dtype=np.float32)), max_edits=2, outcome="bright", n=n)
    print(json.dumps({"n": n, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--memory-child", type=int)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    from certkit.models import TorchClassifier, VisionLanguageModel
    from certkit.noise import Gaussian
    from certkit.oracles import ActionOracle, LabelOracle
    from certkit.testing import SmallGuard

    torch.set_num_threads(2)
    kernels = {"image-only": (Gaussian(0.5), None), "hybrid": (Gaussian(0.5), "uniform")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, hidden, layers, image, bs in (("tiny LLaVA (hidden 32, 2 layers, 32 px)", 32, 2, 32, 64),
                                                ("small LLaVA (hidden 256, 4 layers, 64 px)", 256, 4, 64, 32)):
            path = _llava(f"{tmp}/{hidden}", hidden, layers, image)
            adapter = VisionLanguageModel.from_pretrained(path, max_new_tokens=8, batch_size=bs)
            res = throughput(adapter, ActionOracle(["pick up", "place", "hand over"]), kernels, args.n)
            rows.append((f"{name}, 8 new tokens, batch {bs}", res))
    clf = TorchClassifier(SmallGuard(), ["safe", "unsafe"], lambda t: [2 + len(w) for w in t.split()],
                          vocab_size=64, special_ids=[0, 1], mask_id=0, batch_size=256)
    rows.append(("torch classifier (small conv guard, 32 px), batch 256",
                 throughput(clf, LabelOracle(["safe", "unsafe"]), kernels, 8 * args.n)))
    print("samples/s; raw = adapter.run + oracle on pre-drawn noisy batches; ratio = smoothed / raw")
    print("in-run = time inside adapter.run / total time of the smoothed run (immune to machine-speed drift)")
    print(f"{'model':<66} {'kernels':<11} {'raw clean':>9} {'raw':>8} {'smoothed':>9} {'ratio':>6} {'in-run':>7}")
    for name, r in rows:
        for label, m in r.items():
            print(f"{name:<66} {label:<11} {m['raw_clean']:>9.0f} {m['raw']:>8.0f} {m['smoothed']:>9.0f} "
                  f"{m['smoothed'] / m['raw']:>6.2f} {m['model_share']:>7.2f}")
    noise_only()
    for n in (2_000, 20_000):
        out = subprocess.run([sys.executable, "-m", "bench.bench_engine", "--memory-child", str(n)],
                             capture_output=True, text=True, check=True)
        print("memory:", out.stdout.strip())


if __name__ == "__main__":
    main()
