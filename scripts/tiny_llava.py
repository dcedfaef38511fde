"""Write a tiny, randomly initialised LLaVA (CLIP vision + Llama text) that vLLM's CPU backend can serve.

Used by ``scripts/vllm_cpu.sh`` and by the live vLLM test: the server and certkit's in-process adapter load the
same folder, so their answers can be compared sample by sample. The model is :func:`certkit.testing.tiny_llava`
at these sizes, saved in the vision-tower layout vLLM reads; ``certkit/testing/__init__.py`` is loaded by path, so this
runs in vLLM's own virtualenv (torch, transformers, tokenizers; no certkit install). vLLM's CPU attention needs
head_dim >= 32, hence 4 heads of 32 (text) and 2 heads of 32 (vision).

    python scripts/tiny_llava.py OUT_DIR [--seed 0]
"""

import argparse
import importlib.util
from pathlib import Path

WORDS = ("the a an is on in under near with and or not please can you what where which how many do does it this that "
         "knife scissors ball cube cup box table hand red blue green small large sharp round pick up place put away "
         "hand over give me show describe count colour shape left right safe unsafe yes no USER ASSISTANT :").split()


def _testing():
    path = Path(__file__).resolve().parents[1] / "certkit" / "testing" / "__init__.py"
    spec = importlib.util.spec_from_file_location("certkit_testing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(out: Path, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _testing().save_tiny_llava(out, seed, vllm_layout=True, words=WORDS, train_tokenizer=False, split_punctuation=False,
                               image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25], pil=False,
                               vision_hidden=64, vision_heads=2, hidden=128, heads=4, head_dim=32, max_positions=256,
                               generation_ids=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.seed)
    print(args.out)
