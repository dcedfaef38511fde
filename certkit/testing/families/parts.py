"""What every family's tiny checkpoint is built from: the word list, the small text config, the word-level tokenizer,
a chat template of the family's shape, the CLIP and SigLIP vision configs, a Llama text config, and the save."""

from __future__ import annotations

import os

import torch

from .. import word_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ("user assistant model system pick up place hand over the a red green blue cube cup knife ball to on table "
         "person please now I cannot help with that refuse it is safe unsafe USER : ASSISTANT").split()

#: text config shared by all families (small, random)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            max_position_embeddings=2048)


def tokenizer(specials: list[str], chat_template: str, words=WORDS, **names):
    """:func:`certkit.testing.word_tokenizer` over :data:`WORDS` (or ``words``), with the family's ``specials``,
    template and token names (``bos``, ``eos``, ``pad``, ``extra``, ``cls``)."""
    return word_tokenizer(words, specials=specials, chat_template=chat_template, **names)


def chat_template(user: str, assistant: str, image: str, end: str = "") -> str:
    """A chat template: ``user`` opens a user turn, the image placeholder comes first, then the text."""
    return ("{% for m in messages %}{% if m['role'] == 'user' %}" + user +
            "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image + "{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
            + end + "{% endif %}{% endfor %}{% if add_generation_prompt %}" + assistant + "{% endif %}")


def save(model_cls, config, processor, directory, seed=0) -> str:
    """``save_pretrained`` a ``model_cls(config)`` initialised from ``seed`` and ``processor`` into ``directory``;
    returns it as a string."""
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def clip_vision(image_size=32, patch=8):
    """A 2-layer CLIP vision config of width 32."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=image_size, patch_size=patch, projection_dim=32)


def siglip_vision(image_size=32, patch=8):
    """A 2-layer SigLIP vision config of width 32."""
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=patch)


def llama_text(tok, **over):
    """A Llama text config of :data:`TEXT`'s sizes (``over`` replaces any) with ``tok``'s vocabulary and special ids."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, **{**TEXT, **over})
