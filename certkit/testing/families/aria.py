"""Aria: SigLIP-style vision and a mixture-of-experts text model."""

from __future__ import annotations

from .parts import TEXT, chat_template, save, tokenizer

#: what Aria's checkpoint needs at load time (a user of the real checkpoint passes it too)
SETTINGS = {"processor_kwargs": {"max_image_size": 490}}


def build_aria(directory):
    """Aria: ``AriaForConditionalGeneration`` (SigLIP vision, mixture-of-experts text).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        AriaConfig,
        AriaForConditionalGeneration,
        AriaImageProcessorPil,
        AriaProcessor,
        AriaTextConfig,
        Idefics3VisionConfig,
    )

    template = chat_template("<|im_start|>user\n", "<|im_start|>assistant\n", "<fim_prefix><|img|><fim_suffix>", "<|im_end|>\n")
    specials = ["<|img|>", "<|im_start|>", "<|im_end|>", "<fim_prefix>", "<fim_suffix>"]
    tok = tokenizer(specials, template, eos="<|im_end|>", extra={"image_token": "<|img|>"})
    # Aria's image processor takes only its published sizes (490 or 980); 490 at patch 14 is 35 x 35 patches
    ip = AriaImageProcessorPil(max_image_size=490, min_image_size=336, split_image=False)
    processor = AriaProcessor(image_processor=ip, tokenizer=tok, chat_template=template, size_conversion={490: 4})
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=490, patch_size=14)
    text = AriaTextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          moe_num_experts=2, moe_topk=1, moe_num_shared_experts=1, **TEXT)
    config = AriaConfig(vision_config=vision, text_config=text, projector_patch_to_query_dict={1225: 4},
                        image_token_index=tok.convert_tokens_to_ids("<|img|>"))
    return save(AriaForConditionalGeneration, config, processor, directory)
