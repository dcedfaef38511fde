"""The LLaVA families: LLaVA-1.5, LLaVA-NeXT (any-resolution tiling) and LLaVA-OneVision (SigLIP vision, Qwen2 text)."""

from __future__ import annotations

from .parts import TEXT, chat_template, clip_vision, llama_text, save, siglip_vision, tokenizer

PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]


def build_llava(directory):
    """LLaVA-1.5 shape (CLIP vision, Llama text): :func:`certkit.testing.save_tiny_llava`.
    Saves model and processor to ``directory``; returns it."""
    from .. import save_tiny_llava

    return save_tiny_llava(directory)


def build_llava_next(directory):
    """LLaVA-NeXT: ``LlavaNextForConditionalGeneration`` with any-resolution tiling over 32/64-pixel pinpoints.
    Saves model and processor to ``directory``; returns it."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

    template = chat_template("USER : ", " ASSISTANT :", "<image> ")
    tok = tokenizer(["<image>"], template)
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
    processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                                   image_token="<image>", num_additional_image_tokens=1, chat_template=template)
    config = LlavaNextConfig(vision_config=clip_vision(), text_config=llama_text(tok), image_grid_pinpoints=PINPOINTS,
                             image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                             vision_feature_select_strategy="default")
    return save(LlavaNextForConditionalGeneration, config, processor, directory)


def build_llava_onevision(directory):
    """LLaVA-OneVision: ``LlavaOnevisionForConditionalGeneration`` (SigLIP vision, Qwen2 text; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
    )

    template = chat_template("<|im_start|>user\n", "<|im_start|>assistant\n", "<image>\n", "<|im_end|>\n")
    tok = tokenizer(["<image>", "<video>", "<|im_start|>", "<|im_end|>"], template, bos=None, eos="<|im_end|>", pad="<|endoftext|>")
    ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
    vp = LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32})
    processor = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, num_image_tokens=16,
                                        vision_feature_select_strategy="full", chat_template=template)
    text = Qwen2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **TEXT)
    config = LlavaOnevisionConfig(vision_config=siglip_vision(), text_config=text, image_grid_pinpoints=PINPOINTS,
                                  image_token_index=tok.convert_tokens_to_ids("<image>"),
                                  video_token_index=tok.convert_tokens_to_ids("<video>"),
                                  vision_feature_select_strategy="full", vision_feature_layer=-1)
    return save(LlavaOnevisionForConditionalGeneration, config, processor, directory)
