"""The Pixtral vision encoder's families ([IMG]/[IMG_BREAK]/[IMG_END] tokens; need torchvision): Pixtral and Mistral 3."""

from __future__ import annotations

from .parts import TEXT, chat_template, llama_text, save, tokenizer


def _pixtral_parts():
    """The template, tokenizer, image processor and vision config Pixtral and Mistral 3 share."""
    from transformers import PixtralImageProcessorPil, PixtralVisionConfig

    template = chat_template("[INST]", "[/INST]", "[IMG]")
    tok = tokenizer(["[IMG]", "[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"], template)
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
    config = LlavaConfig(vision_config=vision, text_config=llama_text(tok), image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                         vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu")
    return save(LlavaForConditionalGeneration, config, processor, directory)


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
    return save(Mistral3ForConditionalGeneration, config, processor, directory)
