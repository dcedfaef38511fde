"""Llama 3.2 Vision (Mllama): a tiled vision encoder whose features enter the text model through cross-attention."""

from __future__ import annotations

from .parts import TEXT, chat_template, save, tokenizer


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

    template = chat_template("<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                             "<|image|>", "<|eot_id|>")
    specials = ["<|image|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok = tokenizer(specials, template, bos="<|begin_of_text|>", eos="<|eot_id|>")
    ip = MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2)
    processor = MllamaProcessor(image_processor=ip, tokenizer=tok, chat_template=template)
    vision = MllamaVisionConfig(hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=64,
                                vision_output_dim=64, image_size=32, patch_size=8, max_num_tiles=2, intermediate_layers_indices=[0],
                                supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    text = MllamaTextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, cross_attention_layers=[1], **TEXT)
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|image|>"))
    return save(MllamaForConditionalGeneration, config, processor, directory)
