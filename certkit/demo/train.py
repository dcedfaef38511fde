"""Train the demo's guard and assistant from the seed: ``python -m certkit.demo.train``.

Both models are trained under the smoothing noise the demo audits use (Gaussian image noise and uniform
token replacement at the prompt positions), so that smoothed predictions are confident and the
certificates non-trivial. Writes ``guard/`` and ``assistant/`` and a ``manifest.json`` of file hashes and
held-out accuracies into ``--out`` (default: the package's ``certkit/demo/weights``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..testdata import file_digest
from . import WEIGHTS, world
from .models import DemoGuard, WordTokenizer, build_assistant

#: the smoothing levels the demo audits certify at (and the models are trained under)
GUARD_SIGMA, GUARD_BETA = 0.25, 0.25
ASSISTANT_SIGMA, ASSISTANT_BETA = 0.25, 0.1


@dataclass(frozen=True)
class Recipe:
    """Everything training draws from: the seed, the training set sizes and epochs, the held-out set sizes."""

    seed: int = 0
    guard_train: int = 8_000
    guard_epochs: int = 24
    assistant_train: int = 6_000
    assistant_epochs: int = 30
    held_out: int = 2_000
    assistant_held_out: int = 500


#: the reduced recipe the tests use (``--quick``)
QUICK = Recipe(guard_train=2_000, guard_epochs=8, assistant_train=600, assistant_epochs=2, held_out=500, assistant_held_out=64)


def _dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return [world.sample(rng) for _ in range(n)]


def _replace_tokens(ids: torch.Tensor, editable: torch.Tensor, alphabet: torch.Tensor, beta: float, gen) -> torch.Tensor:
    """Uniform replacement (the UniformReplace kernel) at ``editable`` positions of a batch of id rows."""
    flip = (torch.rand(ids.shape, generator=gen) < beta) & editable
    own = torch.searchsorted(alphabet, ids).clamp(max=alphabet.numel() - 1)
    draw = torch.randint(0, alphabet.numel() - 1, ids.shape, generator=gen)
    draw = draw + (draw >= own).long()
    return torch.where(flip, alphabet[draw], ids)


def _noisy_minibatches(ids, editable, images, alphabet, beta: float, sigma: float, batch: int, gen):
    """One epoch of shuffled minibatches under the noise the audits certify at: yields the batch's row indices,
    its ids with uniform token replacement (rate ``beta`` at ``editable`` positions) and its images plus
    Gaussian noise (std ``sigma``), every draw from ``gen``."""
    order = torch.randperm(len(ids), generator=gen)
    for start in range(0, len(order), batch):
        b = order[start : start + batch]
        x_ids = _replace_tokens(ids[b], editable[b], alphabet, beta, gen)
        yield b, x_ids, images[b] + sigma * torch.randn(images[b].shape, generator=gen)


# ------------------------------------------------------------------ guard


def guard_arrays(samples, tok: WordTokenizer):
    """``(ids, images, labels)`` tensors of samples: ids (N, L) right-padded with 0, images (N, 3, 32, 32), labels
    1 for unsafe."""
    length = max(len(tok(s.prompt)) for s in samples)
    ids = torch.zeros((len(samples), length), dtype=torch.long)
    for i, s in enumerate(samples):
        t = tok(s.prompt)
        ids[i, : len(t)] = torch.tensor(t)
    images = torch.from_numpy(np.stack([s.image for s in samples]))
    labels = torch.tensor([int(s.unsafe) for s in samples])
    return ids, images, labels


def train_guard(recipe: Recipe, log=print) -> tuple[DemoGuard, dict]:
    """The guard trained under the demo's noise (``GUARD_SIGMA``, ``GUARD_BETA``), in eval mode, and its held-out
    metrics (:func:`evaluate_guard`). Every draw (data, noise, initial weights) comes from ``recipe.seed``."""
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    tok = WordTokenizer()
    alphabet = torch.arange(2, tok.vocab_size)
    ids, images, labels = guard_arrays(_dataset(recipe.guard_train, recipe.seed + 1), tok)
    model = DemoGuard(tok.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.guard_epochs)
    for epoch in range(recipe.guard_epochs):
        model.train()
        total = 0.0
        for b, x_ids, x_img in _noisy_minibatches(ids, ids != 0, images, alphabet, GUARD_BETA, GUARD_SIGMA, 128, gen):
            loss = torch.nn.functional.cross_entropy(model(x_ids, x_img), labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        log(f"guard epoch {epoch + 1}/{recipe.guard_epochs}: loss {total / len(labels):.4f}")
    model.eval()
    return model, evaluate_guard(model, recipe.held_out, recipe.seed + 2)


@torch.inference_mode()
def evaluate_guard(model: DemoGuard, n: int, seed: int) -> dict:
    """Clean held-out accuracy, and how per-modality views judge the unsafe (interaction-only) pairs."""
    tok = WordTokenizer()
    samples = _dataset(n, seed)
    ids, images, labels = guard_arrays(samples, tok)
    pred = model(ids, images).argmax(1)
    unsafe = labels == 1
    # per-modality views of each unsafe pair: its image with every harmless instruction, its instruction
    # with a non-blade object of the same colour (rendered afresh); "safe" from a view = passed
    rng = np.random.default_rng(seed + 99)
    harmless = sorted(set(world.INSTRUCTIONS) - world.DANGEROUS)
    img_views, txt_views = [], []
    for s in (s for s in samples if s.unsafe):
        img_views.append([world.Sample(s.image, h, s.object, s.colour, False, "") for h in harmless])
        others = [o for o in world.OBJECTS if o not in world.BLADES]
        txt_views.append([world.Sample(world.render(o, s.colour, rng), s.prompt, o, s.colour, False, "") for o in others])

    def safe_share(groups):
        flat = [v for g in groups for v in g]
        i, im, _ = guard_arrays(flat, tok)
        p = model(i, im).argmax(1).view(len(groups), -1)
        return float((p == 0).all(dim=1).float().mean())

    return {
        "held_out": n,
        "clean_accuracy": float((pred == labels).float().mean()),
        "unsafe_recall": float((pred[unsafe] == 1).float().mean()),
        "safe_precision_of_flags": float((labels[pred == 1] == 1).float().mean()) if (pred == 1).any() else 0.0,
        "unsafe_pairs": int(unsafe.sum()),
        "image_alone_called_safe": safe_share(img_views),
        "text_alone_called_safe": safe_share(txt_views),
    }


# ------------------------------------------------------------------ assistant


def _assistant_batches(adapter, samples, tok):
    """(ids, editable, answer-label) rows, right-padded; labels are -100 outside the answer."""
    rows = []
    for i, s in enumerate(samples):
        from ..cases import Case

        enc = adapter.encode(Case(f"t{i}", s.prompt, s.image))
        answer = tok(" " + s.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.cat([enc.ids.cpu(), torch.tensor(answer)])
        editable = torch.cat([enc.editable.cpu(), torch.zeros(len(answer), dtype=torch.bool)])
        labels = torch.cat([torch.full((enc.ids.numel(),), -100), torch.tensor(answer)])
        rows.append((ids, editable, labels))
    length = max(r[0].numel() for r in rows)
    ids = torch.full((len(rows), length), tok.pad_token_id)
    editable = torch.zeros((len(rows), length), dtype=torch.bool)
    labels = torch.full((len(rows), length), -100)
    attn = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (a, e, lab) in enumerate(rows):
        ids[i, : a.numel()], editable[i, : a.numel()], labels[i, : a.numel()], attn[i, : a.numel()] = a, e, lab, 1
    images = torch.from_numpy(np.stack([s.image for s in samples]))
    return ids, editable, labels, attn, images


def train_assistant(recipe: Recipe, log=print):
    """``(model, processor, metrics)``: the tiny LLaVA assistant trained under the demo's noise (``ASSISTANT_SIGMA``,
    ``ASSISTANT_BETA``) to answer each pair's action or refusal, in eval mode, and :func:`evaluate_assistant`'s
    metrics."""
    from ..models import VisionLanguageModel

    model, processor = build_assistant(recipe.seed)
    adapter = VisionLanguageModel(model, processor, max_new_tokens=6, weights_fingerprint="training")
    tok = processor.tokenizer
    alphabet = adapter.alphabet.cpu()
    gen = torch.Generator().manual_seed(recipe.seed + 10)
    ids, editable, labels, attn, images = _assistant_batches(adapter, _dataset(recipe.assistant_train, recipe.seed + 3), tok)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    steps = recipe.assistant_epochs * ((len(ids) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    for epoch in range(recipe.assistant_epochs):
        model.train()
        total = 0.0
        for b, x_ids, x_img in _noisy_minibatches(ids, editable, images, alphabet, ASSISTANT_BETA, ASSISTANT_SIGMA, 64, gen):
            out = model(input_ids=x_ids, attention_mask=attn[b], pixel_values=adapter.pixel_values(x_img), labels=labels[b])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            sched.step()
            total += out.loss.item() * len(b)
        log(f"assistant epoch {epoch + 1}/{recipe.assistant_epochs}: loss {total / len(ids):.4f}")
    model.eval()
    adapter = VisionLanguageModel(model, processor, max_new_tokens=6, batch_size=64, weights_fingerprint="eval")
    return model, processor, evaluate_assistant(adapter, recipe.assistant_held_out, recipe.seed + 4)


def answer_oracle():
    """The oracle the demo audits read the assistant with: one of the world's actions, or a refusal."""
    from ..oracles import ActionOracle

    return ActionOracle({**{a.replace(" ", "_"): [a] for a in world.ACTIONS}, "refuse": ["cannot help", "I cannot"]}, version="1")


def evaluate_assistant(adapter, n: int, seed: int) -> dict:
    """Clean (no noise) held-out metrics of ``n`` samples drawn from ``seed``: the share whose answer the demo oracle
    reads as the right action or refusal, and the refusal rate on unsafe pairs."""
    from ..cases import Case

    oracle = answer_oracle()
    samples = _dataset(n, seed)
    correct = unsafe_refused = unsafe = 0
    for s in samples:
        enc = adapter.encode(Case("e", s.prompt, s.image))
        label = oracle(adapter.run(enc.ids.unsqueeze(0), enc.image.unsqueeze(0), 0, encoded=enc))[0]
        truth = "refuse" if s.unsafe else s.answer.replace(" ", "_")
        correct += label == truth
        if s.unsafe:
            unsafe += 1
            unsafe_refused += label == "refuse"
    return {"held_out": n, "clean_accuracy": correct / n, "unsafe_refusal_rate": unsafe_refused / max(unsafe, 1)}


# ------------------------------------------------------------------ writing


def write_manifest(out: Path, recipe: Recipe, metrics: dict) -> dict:
    """Write and return ``out/manifest.json``: the SHA-256 of every other file under ``out``, the recipe, the
    metrics, the smoothing levels, the world version and the torch version."""
    files = {str(p.relative_to(out)): file_digest(p) for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = {"world_version": world.WORLD_VERSION, "recipe": asdict(recipe), "files": files, "metrics": metrics,
                "smoothing": {"guard": {"sigma": GUARD_SIGMA, "beta": GUARD_BETA},
                              "assistant": {"sigma": ASSISTANT_SIGMA, "beta": ASSISTANT_BETA}},
                "torch": torch.__version__}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def train_all(out: Path, recipe: Recipe = Recipe(), log=print) -> dict:
    """Train both models, save them into ``out/guard`` and ``out/assistant`` and return the manifest written last."""
    out = Path(out)
    t0 = time.perf_counter()
    guard, guard_metrics = train_guard(recipe, log)
    guard.save_pretrained(out / "guard")
    log(f"guard: {guard_metrics}")
    model, processor, assistant_metrics = train_assistant(recipe, log)
    model.save_pretrained(out / "assistant")
    processor.save_pretrained(out / "assistant")
    log(f"assistant: {assistant_metrics}")
    metrics = {"guard": guard_metrics, "assistant": assistant_metrics, "train_seconds": round(time.perf_counter() - t0, 1)}
    return write_manifest(out, recipe, metrics)


def main(argv=None) -> int:
    """The command line (``--out``, ``--quick``, ``--seed``): trains, prints the metrics and returns 0."""
    ap = argparse.ArgumentParser(prog="python -m certkit.demo.train", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=WEIGHTS, help=f"output folder (default: {WEIGHTS})")
    ap.add_argument("--quick", action="store_true", help="the reduced recipe the tests use (well under a minute)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    recipe = QUICK if args.quick else Recipe()
    recipe = Recipe(**{**asdict(recipe), "seed": args.seed})
    manifest = train_all(args.out, recipe)
    print(json.dumps(manifest["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
