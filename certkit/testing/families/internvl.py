"""InternVL: the InternViT vision encoder (images cropped into patches) and Qwen2 text; needs torchvision."""

from __future__ import annotations

from .parts import TEXT, chat_template, save, tokenizer


def build_internvl(directory):
    """InternVL: ``InternVLForConditionalGeneration`` (InternViT vision, Qwen2 text; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    template = chat_template("<|im_start|>user\n", "<|im_start|>assistant\n", "<IMG_CONTEXT>\n", "<|im_end|>\n")
    specials = ["<img>", "</img>", "<IMG_CONTEXT>", "<video>", "<|im_start|>", "<|im_end|>"]
    tok = tokenizer(specials, template, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                    extra={"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                           "video_token": "<video>"})
    ip = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=True, min_patches=1, max_patches=4)
    vp = InternVLVideoProcessor(size={"height": 32, "width": 32})
    processor = InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, image_seq_length=4, chat_template=template)
    vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  image_size=32, patch_size=8)
    text = Qwen2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **TEXT)
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
                            image_seq_length=4, downsample_ratio=0.5, vision_feature_select_strategy="default")
    return save(InternVLForConditionalGeneration, config, processor, directory)
