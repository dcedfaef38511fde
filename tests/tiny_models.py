"""Tiny real models for tests: a LLaVA (CLIP vision + Llama text) built from configs with a tokenizer
trained in-process, and small torch classifiers. Nothing is downloaded."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = (
    "USER : ASSISTANT pick up place hand over the a red green blue cube cup knife ball to on table person "
    "please now I cannot help with that refuse it is"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER : "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " ASSISTANT :{% endif %}{% endfor %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<s>", "</s>", "<image>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tiny_llava(directory, seed: int = 0, image_size: int = 32, max_positions: int = 128) -> str:
    """Build a randomly initialised tiny LLaVA and its processor, ``save_pretrained`` both into ``directory``."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = build_tokenizer()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                               image_token="<image>", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


class BrightnessClassifier(torch.nn.Module):
    """Class 1 ("bright") iff the mean pixel exceeds 0.5; ignores the text. Deterministic and real."""

    def forward(self, ids, images):
        score = images.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-score, score], dim=1)


class KeywordImageClassifier(torch.nn.Module):
    """'unsafe' iff token ``trigger`` appears in the prompt AND the image is bright: an interaction-only rule."""

    def __init__(self, trigger: int):
        super().__init__()
        self.register_buffer("trigger", torch.tensor(trigger))

    def forward(self, ids, images):
        has = (ids == self.trigger).any(dim=1).float()
        bright = (images.mean(dim=(1, 2, 3)) > 0.5).float()
        score = has * bright - 0.5
        return torch.stack([-score, score], dim=1)


class SmallGuard(torch.nn.Module):
    """A small multimodal guard of realistic shape: conv image tower + token embedding bag + MLP head."""

    def __init__(self, vocab_size: int = 64, classes: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        )
        self.embed = torch.nn.EmbeddingBag(vocab_size, 64, mode="mean")
        self.head = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, classes))

    def forward(self, ids, images):
        return self.head(torch.cat([self.conv(images).flatten(1), self.embed(ids)], dim=1))
