"""A LLaVA-1.5-7B-shaped model on a GPU (issue 7): samples/s raw and smoothed, image-only and hybrid noise,
and the time one requirement takes, against the paper's ~156 s (image-only) and ~500 s (hybrid) per
datapoint at n = 10,000.

``python -m bench.bench_llava7b [--batch 64] [--new-tokens 16] [--n 512] [--repeats 2]``: the model is
built from its config with random bf16 weights (nothing is downloaded): CLIP ViT-L/14 at 336 px (576
image tokens), a 2-layer MLP projector and a Llama-2-7B text tower (4096 hidden, 32 layers, vocab 32,064),
with a word-level tokenizer of 32,000 tokens trained in-process, and a 40-token user prompt. Random weights never emit EOS, so every
sample generates exactly ``--new-tokens`` tokens: the timing is that of the worst case, not of short
refusals. ``--shape tiny --device cpu`` runs the same code path with a tiny model (a smoke run).
Without CUDA (and without ``--device cpu``) it prints why and returns.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = {
    # vision: hidden, layers, heads, intermediate, image, patch; text: hidden, layers, heads, intermediate
    "7b": dict(v=(1024, 24, 16, 4096, 336, 14), t=(4096, 32, 32, 11008), vocab=32_000),
    "tiny": dict(v=(64, 2, 2, 128, 56, 14), t=(64, 2, 2, 128), vocab=2_000),
}
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " ASSISTANT:{% endif %}{% endfor %}"
)


def build(shape: str, device: str, batch: int, new_tokens: int):
    """A VisionLanguageModel around a randomly initialised LLaVA of the given shape."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    from certkit.models import VisionLanguageModel

    s = SHAPES[shape]
    words = ["USER:", "ASSISTANT:"] + [f"w{i}" for i in range(s["vocab"] - 7)]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(vocab_size=s["vocab"], special_tokens=["<unk>", "<pad>", "<s>", "</s>", "<image>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = TEMPLATE
    vh, vl, vheads, vi, image, patch = s["v"]
    th, tl, theads, ti = s["t"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": image}, crop_size={"height": image, "width": image}),
        tokenizer=fast, patch_size=patch, vision_feature_select_strategy="default", image_token="<image>",
        num_additional_image_tokens=1, chat_template=TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=vh, intermediate_size=vi, num_hidden_layers=vl, num_attention_heads=vheads,
                                       image_size=image, patch_size=patch, projection_dim=768),
        text_config=LlamaConfig(vocab_size=-(-len(fast) // 64) * 64, hidden_size=th, intermediate_size=ti, num_hidden_layers=tl,
                                num_attention_heads=theads, num_key_value_heads=theads, max_position_embeddings=4096,
                                pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id),
        image_token_index=fast.convert_tokens_to_ids("<image>"), vision_feature_layer=-2, vision_feature_select_strategy="default",
        projector_hidden_act="gelu")
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    params = sum(p.numel() for p in model.parameters())
    adapter = VisionLanguageModel(model, processor, max_new_tokens=new_tokens, batch_size=batch,
                                      weights_fingerprint=f"random-llava-{shape}-seed0")
    return adapter, params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--n", type=int, default=512, help="samples per timed pass (a multiple of --batch)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_llava7b: no CUDA GPU here; skipped (run it on a GPU machine, or --shape tiny --device cpu for a smoke run)")
        return None
    from bench.bench_engine import throughput
    from certkit.noise import Gaussian
    from certkit.oracles import KeywordOracle

    t0 = time.perf_counter()
    adapter, params = build(args.shape, args.device, args.batch, args.new_tokens)
    built = time.perf_counter() - t0
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{args.shape} LLaVA, {params / 1e6:,.1f} M parameters, bf16, on {name}; built in {built:.0f} s; "
          f"batch {args.batch}, {args.new_tokens} new tokens, {args.n} samples per pass, best of {args.repeats}")
    kernels = {"image-only": (Gaussian(0.5), None), "hybrid": (Gaussian(0.5), "uniform")}
    prompt = " ".join(f"w{i * 37 % 1000}" for i in range(40))  # a 40-token user prompt
    res = throughput(adapter, KeywordOracle.refusal(), kernels, args.n, repeats=args.repeats, prompt=prompt)
    paper = {"image-only": 156.0, "hybrid": 500.0}
    print(f"{'kernels':<11} {'raw clean':>9} {'raw':>8} {'smoothed':>9} {'ratio':>6} {'in-run':>7} {'n=10,000':>9} {'paper':>6} {'n=195':>6}")
    for label, m in res.items():
        print(f"{label:<11} {m['raw_clean']:>9.1f} {m['raw']:>8.1f} {m['smoothed']:>9.1f} {m['smoothed'] / m['raw']:>6.2f} "
              f"{m['model_share']:>7.2f} {10_000 / m['smoothed']:>8.0f}s {paper[label]:>5.0f}s {195 / m['smoothed']:>5.1f}s")
    print("samples/s; n=10,000 = seconds for a fixed-n requirement at the smoothed rate; n=195 = the sequential test's "
          "mean samples per requirement on the demo audit (BENCHMARKS.md)")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return res


if __name__ == "__main__":
    main()
