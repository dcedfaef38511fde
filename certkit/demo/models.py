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
        return len(self.tokens)

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (0, 1)

    def __call__(self, text: str) -> list[int]:
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
        img = self.image(images)
        mask = (ids != 0).unsqueeze(-1).float()
        txt = self.text((self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return self.head(torch.cat([img, txt, img * txt], dim=1))

    def save_pretrained(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory) -> "DemoGuard":
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        model = cls(config["vocab_size"], config["width"])
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        return model.eval()


CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER : "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " ASSISTANT :{% endif %}{% endfor %}"
)


def build_assistant(seed: int, hidden: int = 64, layers: int = 2):
    """A randomly initialised tiny LLaVA (CLIP vision + Llama text) with its own word-level tokenizer and
    processor, ready to train: returns ``(model, processor)``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
    words = [*world.VOCABULARY, "USER", ":", "ASSISTANT"]
    vocab = {t: i for i, t in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = CHAT_TEMPLATE
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=fast, patch_size=8, vision_feature_select_strategy="default",
                               image_token="<image>", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=hidden)
    text = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                       pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=fast.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    return model, processor
