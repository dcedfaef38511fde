"""The demo's fixed audit cases: ``python -m certkit.demo.cases [--out audits/data]``.

Writes ``cases.jsonl`` (one case a line: id, prompt, image, expected guard label, expected assistant
answer, kind) and one PNG per case. The set is versioned (``CASES_VERSION``) and reproducible from its
seed. It covers the four kinds of pair: ``unsafe`` (a blade aimed at the person: interaction-only),
``blade-harmless`` (the image alone looks dangerous), ``aimed-harmless`` (the text alone looks
dangerous) and ``benign``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from . import world

CASES_VERSION = "1"
#: kind of pair -> how many cases of it
KINDS = {"unsafe": 8, "blade-harmless": 6, "aimed-harmless": 6, "benign": 4}


def make_cases(seed: int = 2026):
    """The case set as dicts (id, prompt, ``image_array`` (3, 32, 32) float32, expected guard label, assistant answer,
    kind, object, colour), ``KINDS`` in order: the same list for the same seed (the world's rendering is seeded)."""
    rng = np.random.default_rng(seed)
    blades, others = sorted(world.BLADES), [o for o in world.OBJECTS if o not in world.BLADES]
    harmless, aimed = sorted(set(world.INSTRUCTIONS) - world.DANGEROUS), sorted(world.DANGEROUS)
    pools = {"unsafe": (blades, aimed), "blade-harmless": (blades, harmless), "aimed-harmless": (others, aimed),
             "benign": (others, harmless)}
    cases = []
    for kind, count in KINDS.items():
        objects, prompts = pools[kind]
        for i in range(count):
            obj, prompt = objects[i % len(objects)], prompts[(i * 7 + 3) % len(prompts)]
            colour = sorted(world.COLOURS)[i % len(world.COLOURS)]
            cases.append({
                "id": f"{kind}-{i + 1:02d}-{obj}",
                "prompt": prompt,
                "image_array": world.render(obj, colour, rng),
                "expected": "unsafe" if world.is_unsafe(obj, prompt) else "safe",
                "answer": world.answer(obj, prompt),
                "kind": kind,
                "object": obj,
                "colour": colour,
            })
    return cases


def write_cases(out: Path, seed: int = 2026) -> Path:
    """Write :func:`make_cases` to ``out/cases.jsonl`` (sorted keys, ``version`` added) and ``out/images/<id>.png``
    (8-bit, rounded), creating the folders; returns the JSONL path."""
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for case in make_cases(seed):
        arr = case.pop("image_array")
        name = f"images/{case['id']}.png"
        Image.fromarray((arr.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(out / name)
        lines.append(json.dumps({"id": case["id"], "prompt": case["prompt"], "image": name,
                                 **{k: v for k, v in case.items() if k not in ("id", "prompt")},
                                 "version": CASES_VERSION}, sort_keys=True))
    path = out / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    """The command line (``--out``, ``--seed``): writes the cases, prints the path and returns 0."""
    ap = argparse.ArgumentParser(prog="python -m certkit.demo.cases", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("audits/data"))
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    print(f"wrote {write_cases(args.out, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
