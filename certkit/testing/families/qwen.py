"""The Qwen-VL families (their own vision transformer, M-RoPE text; need torchvision): Qwen2-VL, Qwen2.5-VL and Qwen3-VL."""

from __future__ import annotations

from .parts import TEXT, chat_template, save, tokenizer

_QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_QWEN_TEMPLATE = chat_template("<|im_start|>user\n", "<|im_start|>assistant\n", "<|vision_start|><|image_pad|><|vision_end|>",
                               "<|im_end|>\n")


def _qwen_parts(video_cls, image_cls=None, patch=8):
    from transformers import Qwen2VLImageProcessorPil

    tok = tokenizer(_QWEN_SPECIALS, _QWEN_TEMPLATE, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                    extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                           "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"})
    image_cls = image_cls or Qwen2VLImageProcessorPil
    sizes = dict(size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64}, patch_size=patch, merge_size=2, temporal_patch_size=2)
    return tok, image_cls(**sizes), video_cls(**sizes)


def _qwen_ids(tok):
    return dict(image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"), video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
                vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
                vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))


def _qwen_text(cls, tok, **over):
    return cls(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=None, eos_token_id=tok.eos_token_id,
               **{**TEXT, "num_key_value_heads": 2},
               rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}, **over)


def build_qwen2_vl(directory):
    """Qwen2-VL: ``Qwen2VLForConditionalGeneration`` (its own vision transformer, M-RoPE text; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        Qwen2VLTextConfig,
        Qwen2VLVideoProcessor,
        Qwen2VLVisionConfig,
    )

    tok, ip, vp = _qwen_parts(Qwen2VLVideoProcessor)
    processor = Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=_QWEN_TEMPLATE)
    vision = Qwen2VLVisionConfig(depth=2, embed_dim=32, hidden_size=32, num_heads=2, patch_size=8,
                                 spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=_qwen_text(Qwen2VLTextConfig, tok), vision_config=vision, **_qwen_ids(tok))
    return save(Qwen2VLForConditionalGeneration, config, processor, directory)


def build_qwen2_5_vl(directory):
    """Qwen2.5-VL: ``Qwen2_5_VLForConditionalGeneration`` (windowed vision attention; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLVisionConfig,
        Qwen2VLVideoProcessor,
    )

    tok, ip, vp = _qwen_parts(Qwen2VLVideoProcessor)
    processor = Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=_QWEN_TEMPLATE)
    vision = Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8, spatial_merge_size=2,
                                    temporal_patch_size=2, window_size=32, out_hidden_size=32, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=_qwen_text(Qwen2_5_VLTextConfig, tok), vision_config=vision, **_qwen_ids(tok))
    return save(Qwen2_5_VLForConditionalGeneration, config, processor, directory)


def build_qwen3_vl(directory):
    """Qwen3-VL: ``Qwen3VLForConditionalGeneration`` (needs torchvision). Saves model and processor to ``directory``; returns it."""
    from transformers import (
        Qwen2VLImageProcessorPil,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLTextConfig,
        Qwen3VLVideoProcessor,
        Qwen3VLVisionConfig,
    )

    tok, ip, vp = _qwen_parts(Qwen3VLVideoProcessor, Qwen2VLImageProcessorPil)
    processor = Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=_QWEN_TEMPLATE)
    vision = Qwen3VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8, spatial_merge_size=2,
                                 temporal_patch_size=2, out_hidden_size=32, num_position_embeddings=64, deepstack_visual_indexes=[1])
    config = Qwen3VLConfig(text_config=_qwen_text(Qwen3VLTextConfig, tok, head_dim=16), vision_config=vision, **_qwen_ids(tok))
    return save(Qwen3VLForConditionalGeneration, config, processor, directory)
