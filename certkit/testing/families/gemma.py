"""The Gemma families (SigLIP vision, Gemma text): Gemma 3, PaliGemma, and the ShieldGemma 2 guard built on Gemma 3."""

from __future__ import annotations

import torch

from .parts import TEXT, WORDS, chat_template, save, siglip_vision, tokenizer

_GEMMA_SPECIALS = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def _gemma3_parts(template, config_cls, words=WORDS):
    """Gemma 3's tokenizer (with its image markers), image processor and config; ShieldGemma 2 shares them."""
    from transformers import Gemma3ImageProcessorPil, Gemma3TextConfig

    tok = tokenizer(_GEMMA_SPECIALS, template, bos="<bos>", eos="<eos>", words=words,
                    extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    text = Gemma3TextConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, head_dim=16, sliding_window=64, **TEXT)
    config = config_cls(text_config=text, vision_config=siglip_vision(), mm_tokens_per_image=4,
                        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
                        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
                        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"))
    return tok, Gemma3ImageProcessorPil(size={"height": 32, "width": 32}), config


def build_gemma3(directory):
    """Gemma 3: ``Gemma3ForConditionalGeneration`` (SigLIP vision, Gemma 3 text) with its image soft tokens.
    Saves model and processor to ``directory``; returns it."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor

    template = chat_template("<start_of_turn>user\n", "<start_of_turn>model\n", "<start_of_image>", "<end_of_turn>\n")
    tok, ip, config = _gemma3_parts(template, Gemma3Config)
    processor = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=template, image_seq_length=4)
    return save(Gemma3ForConditionalGeneration, config, processor, directory)


def build_paligemma(directory):
    """PaliGemma: ``PaliGemmaForConditionalGeneration`` (SigLIP vision, Gemma text), the image tokens before the prompt.
    Saves model and processor to ``directory``; returns it."""
    from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessorPil

    template = chat_template("", "", "<image>")
    tok = tokenizer(["<image>"], template, bos="<bos>", eos="<eos>", extra={"image_token": "<image>"})
    ip = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=template)
    text = GemmaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, head_dim=16, **TEXT)
    config = PaliGemmaConfig(text_config=text, vision_config=siglip_vision(), projection_dim=32,
                             image_token_index=tok.convert_tokens_to_ids("<image>"))
    config.text_config.num_image_tokens = 16
    return save(PaliGemmaForConditionalGeneration, config, processor, directory)


def build_shieldgemma2(directory):
    """ShieldGemma 2 (a Gemma 3 guard): saved as its image classifier, with its own processor and a policy template.
    ``AutoModelForImageTextToText`` loads the same checkpoint as its Gemma 3 base, which certkit reads in label mode."""
    from transformers import ShieldGemma2Config, ShieldGemma2ForImageClassification, ShieldGemma2Processor

    template = chat_template("<start_of_turn>user\nis this image safe under the policy :", "<start_of_turn>model\n",
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
