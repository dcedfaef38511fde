"""The demo's two models: a multimodal guard (torch) and an assistant (a tiny LLaVA in transformers).

Both are real, trained models of the demo world. They are saved and loaded like a user's models:
the guard with ``save_pretrained``/``from_pretrained`` (config.json + model.safetensors), the assistant as
a transformers checkpoint read by :class:`certkit.models.VisionLanguageModel.from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..testing import CHAT_TEMPLATE, tiny_llava
from . import world

__all__ = ["GUARD_LABELS", "DemoGuard", "WordTokenizer", "build_assistant", "CHAT_TEMPLATE"]

GUARD_LABELS = ("safe", "unsafe")
SPECIALS = ("<pad>", "<unk>")


class WordTokenizer:
    """Whitespace word tokenizer over the world's vocabulary: ids 0 = <pad>, 1 = <unk>, then the words."""

    def __init__(self, words=world.VOCABULARY):
        self.tokens = (*SPECIALS, *words)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        """Number of ids: the two specials and the words."""
        return len(self.tokens)

    @property
    def special_ids(self) -> tuple[int, ...]:
        """``(0, 1)``: <pad> and <unk>, never drawn by text noise."""
        return (0, 1)

    def __call__(self, text: str) -> list[int]:
        """One id per whitespace-separated word, <unk> (1) for a word outside the vocabulary."""
        return [self.index.get(w, 1) for w in text.split()]


class DemoGuard(torch.nn.Module):
    """A small multimodal safe/unsafe classifier: a conv image tower, a token-embedding text tower and a
    multiplicative interaction head (the world's danger is an AND of the two modalities)."""

    def __init__(self, vocab_size: int, width: int = 32):
        super().__init__()
        self.config = {"vocab_size": int(vocab_size), "width": int(width), "labels": list(GUARD_LABELS)}
        self.image = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, width, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),
        )
        self.embed = torch.nn.Embedding(vocab_size, width, padding_idx=0)
        self.text = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Linear(3 * width, width), torch.nn.ReLU(), torch.nn.Linear(width, len(GUARD_LABELS)))

    def forward(self, ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B, 2) logits ``[safe, unsafe]`` for ids (B, L) (0 = padding, ignored) and images (B, 3, H, W)."""
        img = self.image(images)
        mask = (ids != 0).unsqueeze(-1).float()
        txt = self.text((self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return self.head(torch.cat([img, txt, img * txt], dim=1))

    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory) -> "DemoGuard":
        """The guard :meth:`save_pretrained` wrote into ``directory``, in eval mode (a missing or mismatched weight
        is an error of ``load_state_dict``, never a random one)."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        model = cls(config["vocab_size"], config["width"])
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        return model.eval()


def build_assistant(seed: int, hidden: int = 64, layers: int = 2):
    """A randomly initialised tiny LLaVA (CLIP vision + Llama text) with its own word-level tokenizer over the world's
    vocabulary and processor, ready to train: returns ``(model, processor)``. The architecture of the shipped weights:
    :func:`certkit.testing.tiny_llava` with these sizes, deterministic for a seed."""
    return tiny_llava(seed, words=[*world.VOCABULARY, "USER", ":", "ASSISTANT"], train_tokenizer=False, split_punctuation=False,
                      image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
                      vision_hidden=hidden, vision_layers=layers, vision_heads=4, vision_intermediate=4 * hidden,
                      hidden=hidden, layers=layers, heads=4, intermediate=4 * hidden, max_positions=64, generation_ids=True)
