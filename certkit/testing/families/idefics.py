"""The Idefics3 shape (SigLIP-style vision, Llama text, the image split into a grid of tiles): Idefics3 and SmolVLM,
one builder over transformers' two class families."""

from __future__ import annotations

from .parts import chat_template, llama_text, save, tokenizer

_GRID = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]


def _build(directory, family: str, **names):
    """``{family}ForConditionalGeneration`` with ``{family}Processor`` (``family``: ``"Idefics3"`` or ``"SmolVLM"``, whose
    processor takes a ``SmolVLMVideoProcessor`` too); ``names`` are the tokenizer's extra token names."""
    import transformers

    def cls(suffix):
        return getattr(transformers, family + suffix)

    template = chat_template("<|im_start|>User:", "<end_of_utterance>\nAssistant:", "<image>", "<end_of_utterance>\n")
    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", "<|im_start|>", *_GRID]
    tok = tokenizer(specials, template, bos="<|im_start|>", eos="<end_of_utterance>", **names)
    ip = cls("ImageProcessorPil")(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    video = {} if family == "Idefics3" else {
        "video_processor": cls("VideoProcessor")(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})}
    processor = cls("Processor")(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=template, **video)
    vision = cls("VisionConfig")(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=32, patch_size=8)
    config = cls("Config")(vision_config=vision, text_config=llama_text(tok), scale_factor=2,
                           image_token_id=tok.convert_tokens_to_ids("<image>"), pad_token_id=tok.pad_token_id)
    return save(cls("ForConditionalGeneration"), config, processor, directory)


def build_idefics3(directory):
    """Idefics3: ``Idefics3ForConditionalGeneration`` (SigLIP vision, Llama text, image split into a grid).
    Saves model and processor to ``directory``; returns it."""
    return _build(directory, "Idefics3")


def build_smolvlm(directory):
    """SmolVLM: ``SmolVLMForConditionalGeneration`` (Idefics3 shape, image split into a grid; needs torchvision).
    Saves model and processor to ``directory``; returns it."""
    return _build(directory, "SmolVLM", extra={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                                               "end_of_utterance_token": "<end_of_utterance>", "global_image_token": "<global-img>"})
