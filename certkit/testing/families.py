"""Tiny random checkpoints of the major VLM families, built from their configs with their real processor
classes and a word-level tokenizer trained in-process (nothing is downloaded).

``build_<family>(directory) -> directory`` ``save_pretrained``s a model and its processor;
:class:`certkit.models.VisionLanguageModel.from_pretrained` loads them back like
any checkpoint. Each chat template is a short one of the family's own shape (its role markers and image
placeholder), not the full published template. :data:`CPU_FAMILIES` build and run with transformers alone;
:data:`TORCHVISION_FAMILIES` need a torchvision that imports beside the installed torch (:func:`torchvision_ok`).
Every pad id, at every config level (Idefics3 and SmolVLM keep a top-level one whose default, 128002, is past a tiny
vocabulary), is the tokenizer's: torch refuses an embedding whose padding index is past its rows.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from . import word_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ("user assistant model system pick up place hand over the a red green blue cube cup knife ball to on table "
         "person please now I cannot help with that refuse it is safe unsafe USER : ASSISTANT").split()

#: the families whose processors need only transformers, and those whose processors need torchvision
CPU_FAMILIES = ["llava", "llava_next", "gemma3", "paligemma", "mllama", "idefics3", "aria"]
TORCHVISION_FAMILIES = ["pixtral", "mistral3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "smolvlm", "internvl"]


def torchvision_ok() -> bool:
    """Whether torchvision is installed and imports (the registry's CUDA torchvision beside a CPU torch does not)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def build(name: str, directory) -> str:
    """Build family ``name`` (one of :data:`CPU_FAMILIES` or :data:`TORCHVISION_FAMILIES`) into ``directory``; returns
    it as a string. KeyError for another name."""
    if name not in CPU_FAMILIES + TORCHVISION_FAMILIES:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(CPU_FAMILIES + TORCHVISION_FAMILIES)}")
    return globals()[f"build_{name}"](directory)


# text config shared by all families (small, random)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            max_position_embeddings=2048)


def _tokenizer(specials: list[str], chat_template: str, words=WORDS, **names):
    """:func:`certkit.testing.word_tokenizer` over this module's words, with the family's ``specials``, template and
    token names (``bos``, ``eos``, ``pad``, ``extra``, ``cls``)."""
    return word_tokenizer(words, specials=specials, chat_template=chat_template, **names)


def _template(user: str, assistant: str, image: str, end: str = "") -> str:
    """A chat template: ``user`` opens a user turn, the image placeholder comes first, then the text."""
    return ("{% for m in messages %}{% if m['role'] == 'user' %}" + user +
            "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image + "{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
            + end + "{% endif %}{% endfor %}{% if add_generation_prompt %}" + assistant + "{% endif %}")


def _save(model_cls, config, processor, directory, seed=0):
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def _clip_vision(image_size=32, patch=8):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=image_size, patch_size=patch, projection_dim=32)


def _siglip_vision(image_size=32, patch=8):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=patch)


def _llama_text(tok, **over):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, **{**TEXT, **over})


def build_llava(directory):
    """LLaVA-1.5 shape (CLIP vision, Llama text): :func:`certkit.testing.save_tiny_llava`.
    Saves model and processor to ``directory``; returns it."""
    from . import save_tiny_llava

    return save_tiny_llava(directory)


def build_llava_next(directory):
    """LLaVA-NeXT: ``LlavaNextForConditionalGeneration`` with any-resolution tiling over 32/64-pixel pinpoints.
    Saves model and processor to ``directory``; returns it."""
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil, LlavaNextProcessor

    template = _template("USER : ", " ASSISTANT :", "<image> ")
    tok = _tokenizer(["<image>"], template)
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                                   image_token="<image>", num_additional_image_tokens=1, chat_template=template)
    config = LlavaNextConfig(vision_config=_clip_vision(), text_config=_llama_text(tok), image_grid_pinpoints=pinpoints,
                             image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                             vision_feature_select_strategy="default")
    return _save(LlavaNextForConditionalGeneration, config, processor, directory)


_GEMMA_SPECIALS = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def _gemma3_parts(template, config_cls, words=WORDS):
    """Gemma 3's tokenizer (with its image markers), image processor and config; ShieldGemma 2 shares them."""
    from transformers import Gemma3ImageProcessorPil, Gemma3TextConfig

    tok = _tokenizer(_GEMMA_SPECIALS, template, bos="<bos>", eos="<eos>", words=words,
                     extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    text = Gemma3TextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, head_dim=16, sliding_window=64, **TEXT)
    config = config_cls(text_config=text, vision_config=_siglip_vision(), mm_tokens_per_image=4,
                        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
                        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    return tok, Gemma3ImageProcessorPil(size={"height": 32, "width": 32}), config


def build_gemma3(directory):
    """Gemma 3: ``Gemma3ForConditionalGeneration`` (SigLIP vision, Gemma 3 text) with its image soft tokens.
    Saves model and processor to ``directory``; returns it."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor

    template = _template("<start_of_turn>user\n", "<start_of_turn>model\n", "<start_of_image>", "<end_of_turn>\n")
    tok, ip, config = _gemma3_parts(template, Gemma3Config)
    processor = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=template, image_seq_length=4)
    return _save(Gemma3ForConditionalGeneration, config, processor, directory)


def build_paligemma(directory):
    """PaliGemma: ``PaliGemmaForConditionalGeneration`` (SigLIP vision, Gemma text), the image tokens before the prompt.
    Saves model and processor to ``directory``; returns it."""
    from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessorPil

    template = _template("", "", "<image>")
    tok = _tokenizer(["<image>"], template, bos="<bos>", eos="<eos>", extra={"image_token": "<image>"})
    ip = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=template)
    text = GemmaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, head_dim=16, **TEXT)
    config = PaliGemmaConfig(text_config=text, vision_config=_siglip_vision(), projection_dim=32,
                             image_token_index=tok.convert_tokens_to_ids("<image>"))
    config.text_config.num_image_tokens = 16
    return _save(PaliGemmaForConditionalGeneration, config, processor, directory)


def build_mllama(directory):
    """Llama 3.2 Vision: ``MllamaForConditionalGeneration`` (tiled vision encoder, cross-attention text layers).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    template = _template("<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                         "<|image|>", "<|eot_id|>")
    specials = ["<|image|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok = _tokenizer(specials, template, bos="<|begin_of_text|>", eos="<|eot_id|>")
    ip = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2)
    processor = MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=template)
    vision = MllamaVisionConfig(hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=64,
                                vision_output_dim=64, image_size=32, patch_size=8, max_num_tiles=2, intermediate_layers_indices=[0],
                                supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = MllamaTextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, cross_attention_layers=[1], **TEXT)
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    return _save(MllamaForConditionalGeneration, config, processor, directory)


_GRID = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]


def _idefics3_parts(tok_extra=()):
    from transformers import Idefics3ImageProcessorPil, Idefics3VisionConfig

    template = _template("<|im_start|>User:", "<end_of_utterance>\nAssistant:", "<image>", "<end_of_utterance>\n")
    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<|im_start|>", *_GRID, *tok_extra]
    tok = _tokenizer(specials, template, bos="<|im_start|>", eos="<end_of_utterance>")
    ip = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=32, patch_size=8)
    return template, tok, ip, vision


def build_idefics3(directory):
    """Idefics3: ``Idefics3ForConditionalGeneration`` (SigLIP vision, Llama text, image split into a grid).
    Saves model and processor to ``directory``; returns it."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor

    template, tok, ip, vision = _idefics3_parts()
    processor = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=template)
    config = Idefics3Config(vision_config=vision, text_config=_llama_text(tok), scale_factor=2,
                            image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    return _save(Idefics3ForConditionalGeneration, config, processor, directory)


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

    template = _template("<|im_start|>user\n", "<|im_start|>assistant\n", "<fim_prefix><|img|><fim_suffix>", "<|im_end|>\n")
    specials = ["<|img|>", "<|im_start|>", "<|im_end|>", "<fim_prefix>", "<fim_suffix>"]
    tok = _tokenizer(specials, template, eos="<|im_end|>", extra={"image_token": "<|img|>"})
    # Aria's image processor takes only its published sizes (490 or 980); 490 at patch 14 is 35 x 35 patches
    ip = AriaImageProcessorPil(max_image_size=490, min_image_size=336, split_image=False)
    processor = AriaProcessor(image_processor=ip, tokenizer=tok, chat_template=template, size_conversion={490: 4})
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=490, patch_size=14)
    text = AriaTextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          moe_num_experts=2, moe_topk=1, moe_num_shared_experts=1, **TEXT)
    config = AriaConfig(vision_config=vision, text_config=text, projector_patch_to_query_dict={1225: 4},
                        image_token_index=tok.convert_tokens_to_ids("<|img|>"))
    return _save(AriaForConditionalGeneration, config, processor, directory)


#: settings a family's checkpoint needs at load time (what a user of the real checkpoint would pass too)
SETTINGS = {"aria": {"processor_kwargs": {"max_image_size": 490}}}


def _pixtral_parts():
    from transformers import PixtralImageProcessorPil, PixtralVisionConfig

    template = _template("[INST]", "[/INST]", "[IMG]")
    tok = _tokenizer(["[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"], template)
    ip = PixtralImageProcessorPil(size={"longest_edge": 32}, patch_size={"height": 8, "width": 8})
    vision = PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                                 patch_size=8, head_dim=16)
    return template, tok, ip, vision


def build_pixtral(directory):
    """Pixtral: ``LlavaForConditionalGeneration`` with Pixtral's vision encoder and [IMG]/[IMG_BREAK]/[IMG_END] tokens (needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, PixtralProcessor

    template, tok, ip, vision = _pixtral_parts()
    processor = PixtralProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=template)
    config = LlavaConfig(vision_config=vision, text_config=_llama_text(tok), image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                         vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu")
    return _save(LlavaForConditionalGeneration, config, processor, directory)


def build_mistral3(directory):
    """Mistral 3: ``Mistral3ForConditionalGeneration`` (Pixtral vision, Mistral text; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralProcessor

    template, tok, ip, vision = _pixtral_parts()
    processor = PixtralProcessor(image_processor=ip, tokenizer=tok, patch_size=8, spatial_merge_size=2, chat_template=template)
    text = MistralConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, head_dim=16, **TEXT)
    config = Mistral3Config(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                            spatial_merge_size=2, vision_feature_layer=-1)
    return _save(Mistral3ForConditionalGeneration, config, processor, directory)


_QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
_QWEN_TEMPLATE = _template("<|im_start|>user\n", "<|im_start|>assistant\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n")


def _qwen_parts(video_cls, image_cls=None, patch=8):
    from transformers import Qwen2VLImageProcessorPil

    tok = _tokenizer(_QWEN_SPECIALS, _QWEN_TEMPLATE, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
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
    return _save(Qwen2VLForConditionalGeneration, config, processor, directory)


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
    return _save(Qwen2_5_VLForConditionalGeneration, config, processor, directory)


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
    return _save(Qwen3VLForConditionalGeneration, config, processor, directory)


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

    template = _template("<|im_start|>user\n", "<|im_start|>assistant\n", "<image>\n", "<|im_end|>\n")
    tok = _tokenizer(["<image>", "<video>", "<|im_start|>", "<|im_end|>"], template, bos=None, eos="<|im_end|>", pad="<|endoftext|>")
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    vp = LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32})
    processor = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, num_image_tokens=16,
                                        vision_feature_select_strategy="full", chat_template=template)
    text = Qwen2Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **TEXT)
    config = LlavaOnevisionConfig(vision_config=_siglip_vision(), text_config=text, image_grid_pinpoints=pinpoints,
                                  image_token_index=tok.convert_tokens_to_ids("<image>"),
                                  video_token_index=tok.convert_tokens_to_ids("<video>"),
                                  vision_feature_select_strategy="full", vision_feature_layer=-1)
    return _save(LlavaOnevisionForConditionalGeneration, config, processor, directory)


def build_smolvlm(directory):
    """SmolVLM: ``SmolVLMForConditionalGeneration`` (Idefics3 shape, image split into a grid; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
        SmolVLMVisionConfig,
    )

    template = _template("<|im_start|>User:", "<end_of_utterance>\nAssistant:", "<image>", "<end_of_utterance>\n")
    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<|im_start|>", *_GRID]
    tok = _tokenizer(specials, template, bos="<|im_start|>", eos="<end_of_utterance>",
                     extra={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                            "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>"})
    ip = SmolVLMImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    vp = SmolVLMVideoProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = SmolVLMProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, image_seq_len=4, chat_template=template)
    vision = SmolVLMVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=32, patch_size=8)
    config = SmolVLMConfig(vision_config=vision, text_config=_llama_text(tok), scale_factor=2,
                           image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    return _save(SmolVLMForConditionalGeneration, config, processor, directory)


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

    template = _template("<|im_start|>user\n", "<|im_start|>assistant\n", "<IMG_CONTEXT>\n", "<|im_end|>\n")
    specials = ["<img>", "</img>", "<IMG_CONTEXT>", "<video>", "<|im_start|>", "<|im_end|>"]
    tok = _tokenizer(specials, template, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
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
    return _save(InternVLForConditionalGeneration, config, processor, directory)


def build_shieldgemma2(directory):
    """ShieldGemma 2 (a Gemma 3 guard): saved as its image classifier, with its own processor and a policy template.
    ``AutoModelForImageTextToText`` loads the same checkpoint as its Gemma 3 base, which certkit reads in label mode."""
    from transformers import ShieldGemma2Config, ShieldGemma2ForImageClassification, ShieldGemma2Processor

    template = _template("<start_of_turn>user\nis this image safe under the policy :", "<start_of_turn>model\n",
                         "<start_of_image>", " answer Yes or No<end_of_turn>\n")
    tok, ip, config = _gemma3_parts(template, ShieldGemma2Config,
                                    words=WORDS + ["Yes", "No", "answer", "or", "policy", "image", "under", "this"])
    processor = ShieldGemma2Processor(image_processor=ip, tokenizer=tok, chat_template=template, image_seq_length=4,
                                      policy_definitions={"knives": "no knife aimed at a person"})
    config.yes_token_index, config.no_token_index = tok.convert_tokens_to_ids("Yes"), tok.convert_tokens_to_ids("No")
    torch.manual_seed(0)
    # saved as the published checkpoint is: the Gemma 3 model's weights under a shieldgemma2 config, which both
    # ShieldGemma2ForImageClassification and AutoModelForImageTextToText load
    ShieldGemma2ForImageClassification(config).model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
