"""Write a tiny, randomly initialised LLaVA (CLIP vision + Llama text) that vLLM's CPU backend can serve.

Used by ``scripts/vllm_cpu.sh`` and by the live vLLM test: the server and certkit's in-process adapter load the
same folder, so their answers can be compared sample by sample. Self-contained (torch, transformers, tokenizers):
it runs in vLLM's own virtualenv. vLLM's CPU attention needs head_dim >= 32, hence 4 heads of 32 (text) and
2 heads of 32 (vision).

    python scripts/tiny_llava.py OUT_DIR [--seed 0]
"""

import argparse
from pathlib import Path

WORDS = ("the a an is on in under near with and or not please can you what where which how many do does it this that "
         "knife scissors ball cube cup box table hand red blue green small large sharp round pick up place put away "
         "hand over give me show describe count colour shape left right safe unsafe yes no USER ASSISTANT :").split()
TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}USER : {% for c in m['content'] %}{% if c['type'] == 'image' %}"
            "<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %} ASSISTANT :{% endif %}{% endfor %}")


def build(out: Path, seed: int = 0) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
    vocab = {t: i for i, t in enumerate([*specials, *dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    fast.chat_template = TEMPLATE
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                         image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=fast, patch_size=8, vision_feature_select_strategy="default",
                               image_token="<image>", num_additional_image_tokens=1, chat_template=TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=64)
    text = LlamaConfig(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, head_dim=32, max_position_embeddings=256, pad_token_id=fast.pad_token_id,
                       bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=fast.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _legacy_vision_keys(out / "model.safetensors")


def _legacy_vision_keys(path: Path) -> None:
    """transformers 5 saves the CLIP tower as ``vision_tower.*``; vLLM reads ``vision_tower.vision_model.*``, the
    layout every published LLaVA checkpoint has (and transformers still loads)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    prefix, legacy = "vision_tower.", "vision_tower.vision_model."
    state = {(legacy + k[len(prefix):] if k.startswith(prefix) and not k.startswith(legacy) else k): v for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.seed)
    print(args.out)
