"""A case as a vision-language model family reads it: its own chat template and processor, no weights.

Encoding is shared by the in-process adapter (:class:`~certkit.models.VisionLanguageModel`) and the token-in
protocol of served models (:class:`~certkit.models.ServedVLM`): both need the same token ids, the same editable
prompt positions and the same pixels, and only the place of the forward pass differs.

The case prompt is placed in the family's chat template (optionally wrapped in ``prompt_format``, e.g. a
guard's policy text), and the family's processor turns the templated text and the clean image into token ids
and every other model input. The positions of the user's prompt, the only ones text noise may touch, are
located from the tokenizer's character offsets on the templated text and found again in the processor's ids
(processors expand image placeholders, insert tiles, rows and image markers before the prompt, never inside
it); the located tokens are decoded back and must spell the prompt.

Guarantee: what follows the noise is a fixed function of the noisy image: a clamp to [0, 1], rounding to
8 bits for processors with the PIL backend (which only take 8-bit images; torchvision processors take the
float tensor), and the family's processor. A fixed function applied after the noise is part of the smoothed
classifier, so the certificate holds for it as stated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Mapping, Sequence

import numpy as np
import torch

from .base import EncodedCase, ModelError, UnspellableText

__all__ = ["ProcessorEncoding", "tokenizer_fingerprint", "processor_settings", "quantise", "check_prompt_format"]

_SENTINEL = "\u2063CERTKIT_PROMPT\u2063"
_WHITESPACE = re.compile(r"\s+")
#: config keys that name a token the processor places (never part of the replacement alphabet)
_LAYOUT_TOKEN_KEYS = ("image_token_id", "image_token_index", "boi_token_id", "eoi_token_id", "image_start_token_id",
                      "image_end_token_id", "vision_start_token_id", "vision_end_token_id", "video_token_id")


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 hex digest of what decides a tokenizer's ids: its fast backend's full serialisation (else its
    vocabulary), its special tokens and its class."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        payload = backend.to_str()
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = json.dumps({"special": sorted(map(str, tokenizer.all_special_tokens)), "class": type(tokenizer).__name__})
    return hashlib.sha256((payload + extra).encode()).hexdigest()


def processor_settings(processor) -> str:
    """The processor's settings as JSON text (for fingerprints): its own ``to_json_string()``, else its image
    processor's attributes."""
    try:
        return processor.to_json_string()
    except Exception:  # a processor that cannot serialise itself: fall back to its sub-processors' dicts
        image_processor = getattr(processor, "image_processor", None)
        return json.dumps(getattr(image_processor, "__dict__", {}), sort_keys=True, default=str)


def quantise(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) float images -> (B, H, W, C) uint8: clamp to [0, 1], then round to the nearest of 256 levels."""
    return (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def check_prompt_format(prompt_format) -> str:
    """``prompt_format`` itself if it is a string holding ``{prompt}`` exactly once; :class:`ModelError` otherwise."""
    if not isinstance(prompt_format, str) or prompt_format.count("{prompt}") != 1:
        raise ModelError(f"prompt_format must contain '{{prompt}}' exactly once, got {prompt_format!r}")
    return prompt_format


def _rightmost(haystack: list[int], needle: list[int]) -> int | None:
    """Start of the last occurrence of ``needle`` in ``haystack``."""
    n = len(needle)
    for k in range(len(haystack) - n, -1, -1):
        if haystack[k : k + n] == needle:
            return k
    return None


class ProcessorEncoding:
    """The family's processor and chat template around a case: ids, editable positions, processor inputs.

    ``config`` is the model's transformers config (it names the image placeholder and marker tokens, which are
    never in the replacement alphabet). ``system_prompt``, ``prompt_format`` (``{prompt}`` marks the case prompt)
    and ``answer_prefix`` shape the templated text; ``processor_kwargs`` go to every processor call.
    ``alphabet``: every token id of the tokenizer but its special, added and image-layout tokens (sorted);
    ``mask_id``: the mask token, else pad, else unk (None where there is none). :class:`ModelError` for a
    processor without a chat template, tokenizer or image processor, or a ``prompt_format`` without one ``{prompt}``.
    """

    def __init__(self, processor, config, *, system_prompt: str | None = None, prompt_format: str = "{prompt}",
                 answer_prefix: str = "", processor_kwargs: Mapping | None = None):
        if getattr(processor, "chat_template", None) is None:
            raise ModelError("the processor has no chat_template; set processor.chat_template (a Jinja string) before certifying")
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or getattr(processor, "image_processor", None) is None:
            raise ModelError(f"{type(processor).__name__} is not a vision-language processor (it needs a tokenizer and an image processor)")
        self.processor = processor
        self.tokenizer = tokenizer
        self.config = config
        self.system_prompt = system_prompt
        self.prompt_format = check_prompt_format(prompt_format)
        self.answer_prefix = str(answer_prefix)
        self.processor_kwargs = dict(processor_kwargs or {})
        self.torch_images = getattr(processor.image_processor, "backend", None) == "torchvision"
        self._call_processor = processor
        if type(processor).__name__ == "ShieldGemma2Processor":
            # its __call__ ignores the text and builds one prompt per policy; its Gemma 3 base reads the text certkit
            # templated (the guard's own chat template around the case prompt, which holds the policy)
            self._call_processor = functools.partial(type(processor).__mro__[1].__call__, processor)
        self.special_ids = self._special_ids()
        self.alphabet = sorted(i for i in range(len(tokenizer)) if i not in self.special_ids)
        self.mask_id = next((i for i in (tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id) if i is not None), None)

    def _special_ids(self) -> set[int]:
        tok = self.tokenizer
        specials = set(tok.all_special_ids) | {int(i) for i in getattr(tok, "added_tokens_decoder", {}).keys()}
        for key in _LAYOUT_TOKEN_KEYS:
            value = getattr(self.config, key, None)
            if isinstance(value, int):
                specials.add(value)
        return specials

    def settings(self) -> dict:
        """Everything of the encoding that decides what the model reads (for fingerprints)."""
        return {
            "system_prompt": self.system_prompt,
            "prompt_format": self.prompt_format,
            "answer_prefix": self.answer_prefix,
            "processor_kwargs": self.processor_kwargs,
            "chat_template": self.processor.chat_template,
            "processor": processor_settings(self.processor),
            "image_path": "torchvision-float" if self.torch_images else "clamp-uint8-pil",
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
        }

    def label_token_ids(self, labels: Mapping[str, str] | Sequence[str] | None) -> tuple[tuple[str, ...] | None, list[int]]:
        """Label names and the first token id of each label's word; refused where a word is the unknown token or two
        words share a first token."""
        if labels is None:
            return None, []
        if isinstance(labels, str):
            raise ModelError(f"labels must be a mapping label -> word or a list of words, got the string {labels!r}")
        words = dict(labels) if isinstance(labels, Mapping) else {str(w): str(w) for w in labels}
        if len(words) < 2:
            raise ModelError(f"labels needs at least two labels to choose between, got {list(words)}")
        ids = []
        for label, word in words.items():
            toks = self.tokenizer(str(word), add_special_tokens=False)["input_ids"]
            if not toks:
                raise ModelError(f"label {label!r}: the word {word!r} tokenizes to nothing")
            ids.append(int(toks[0]))
        unk = self.tokenizer.unk_token_id
        unknown = [(label, word) for (label, word), i in zip(words.items(), ids) if unk is not None and i == unk]
        if unknown:  # the unknown token's logit says nothing about a word (and two unknown words would clash as one token)
            labels_, words_ = (" and ".join(repr(x) for x in xs) for xs in zip(*unknown))
            one = len(unknown) == 1
            raise ModelError(f"label{'' if one else 's'} {labels_}: this tokenizer cannot spell the word{'' if one else 's'} {words_} "
                             f"and reads {'it' if one else 'them all'} as its unknown token {self.tokenizer.unk_token!r}, whose logit "
                             "says nothing about a word; choose label words the tokenizer knows")
        if len(set(ids)) != len(ids):
            clash = [label for label, i in zip(words, ids) if ids.count(i) > 1]
            raise ModelError(f"labels {clash} begin with the same token, so one next-token read cannot tell them apart; "
                             "choose label words whose first tokens differ (e.g. ' safe' / ' unsafe' with the leading space the "
                             "template leaves)")
        return tuple(str(label) for label in words), ids

    def messages(self, text: str) -> list[dict]:
        """The chat for ``text``: the system prompt (if any), then one user turn of the image followed by ``text``."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
        return messages

    def templated(self, prompt: str) -> tuple[str, int, int]:
        """The full text the processor sees for ``prompt``, and the prompt's character span ``[start, end)`` in it;
        :class:`ModelError` where the chat template does not place the user's text exactly once."""
        user_text = self.prompt_format.replace("{prompt}", _SENTINEL)
        templated = self.processor.apply_chat_template(self.messages(user_text), add_generation_prompt=True, tokenize=False)
        templated += self.answer_prefix
        if templated.count(_SENTINEL) != 1:
            raise ModelError("the chat template does not place the user's text exactly once; certkit cannot locate the prompt")
        prefix, suffix = templated.split(_SENTINEL)
        return prefix + prompt + suffix, len(prefix), len(prefix) + len(prompt)

    def encode(self, case, device) -> EncodedCase:
        """The case's ids, editable prompt positions and clean image on ``device``; ``context`` is the templated text.
        The editable tokens decode to the prompt (whitespace aside) and lie in the replacement alphabet;
        :class:`ModelError` (or :class:`UnspellableText`) where that cannot be ensured."""
        full, start, end = self.templated(case.prompt)
        plain = self.tokenizer(full, return_offsets_mapping=True, add_special_tokens=False)
        self.refuse_special_text(plain["input_ids"], plain["offset_mapping"], full, start, end, case.id)
        image = torch.tensor(case.image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 2:
            raise ModelError(f"case {case.id!r}: image of shape {tuple(image.shape)} cannot be read by a VLM; "
                             "give an RGB or greyscale image of at least 2x2 pixels")
        image = image.to(device)
        inputs = self.process(full, self.rgb(image.unsqueeze(0)), case.id)
        ids = inputs["input_ids"][0].to(device)
        editable = self._locate(ids.tolist(), plain["input_ids"], plain["offset_mapping"], full, start, end, case.id)
        return EncodedCase(ids, editable.to(device), image, context=full)

    def refuse_special_text(self, ids, offsets, full, start, end, case_id) -> None:
        """Refuse a prompt whose characters the tokenizer reads as a special or unknown token (shared with served models).
        An unknown one raises :class:`UnspellableText` with its span in the prompt."""
        for tid, (a, b) in zip(ids, offsets):
            if tid in self.special_ids and a < end and b > start:
                text = self.tokenizer.convert_ids_to_tokens(int(tid))
                if tid == self.tokenizer.unk_token_id:
                    raise UnspellableText(f"case {case_id!r}: this model's tokenizer cannot spell {full[a:b]!r} in the prompt and "
                                          f"reads it as its unknown token {text!r}; an attacker could place that token, but the "
                                          "clean prompt must be in the replacement alphabet: rephrase it",
                                          full[a:b], max(a, start) - start, min(b, end) - start)
                raise ModelError(f"case {case_id!r}: the prompt contains {text!r}, which this model's tokenizer reads as a special token "
                                 "(an image placeholder or control token); remove it from the prompt")

    def _locate(self, proc_ids, plain_ids, offsets, full, start, end, case_id) -> torch.Tensor:
        """Editable mask over the processor's ids: the tokens of the templated text that lie inside the prompt,
        found in the processor's ids by matching the text from the prompt's first token to the end."""
        inside = [b > a and a >= start and b <= end for a, b in offsets]
        if not any(inside):
            raise ModelError(f"case {case_id!r}: no token of the prompt could be located in the templated input (is the prompt empty?)")
        first = inside.index(True)
        tail = plain_ids[first:]
        k = _rightmost(proc_ids, tail)
        if k is None:
            raise ModelError(f"case {case_id!r}: the processor's token ids do not contain the prompt as the tokenizer reads it; "
                             f"certkit cannot locate the prompt for {type(self.processor).__name__}")
        editable = np.zeros(len(proc_ids), dtype=bool)
        editable[k : k + len(tail)] = inside[first:]
        # the characters the prompt's tokens cover, each once: a byte-level tokenizer spells a multi-byte character
        # (é, an emoji) with several tokens, each of whose offsets span the whole character
        covered = np.zeros(len(full), dtype=bool)
        for (a, b), ok in zip(offsets, inside):
            covered[a:b] |= ok
        want = "".join(full[j] for j in np.flatnonzero(covered))
        got = self.tokenizer.decode([proc_ids[j] for j in np.flatnonzero(editable)], skip_special_tokens=False)
        if _WHITESPACE.sub("", got) != _WHITESPACE.sub("", want):
            raise ModelError(f"case {case_id!r}: the located prompt tokens decode to {got!r}, not the prompt {want!r} "
                             "(unknown characters?); certkit will not certify a prompt it cannot locate exactly")
        return torch.from_numpy(editable)

    # ------------------------------------------------------------------ images

    @staticmethod
    def rgb(images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images with C = 3: greyscale repeated over three channels (a view), RGB as it is."""
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    def image_batch(self, images: torch.Tensor) -> tuple[list, dict]:
        """The fixed function after the noise, up to the processor: clamp to [0, 1]; float tensors for torchvision
        processors, 8-bit HWC arrays for PIL ones."""
        kwargs = dict(self.processor_kwargs)
        if self.torch_images:
            kwargs.setdefault("do_rescale", False)
            return list(images.clamp(0.0, 1.0)), kwargs
        return list(quantise(images)), kwargs

    def process(self, text: str, images: torch.Tensor, case_id=None):
        """The processor's inputs for ``len(images)`` copies of ``text``, one image each."""
        images, kwargs = self.image_batch(images)
        batch = [[img] for img in images]
        try:
            return self._call_processor(text=[text] * len(batch), images=batch, return_tensors="pt", **kwargs)
        except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as exc:
            where = f"case {case_id!r}: " if case_id is not None else ""
            raise ModelError(f"{where}{type(self.processor).__name__} cannot process this image and prompt: {exc}") from None

    def checked_inputs(self, encoded: EncodedCase, images: torch.Tensor):
        """The processor's inputs for noisy ``images`` of ``encoded``, refused if the token layout moved with the pixels."""
        inputs = self.process(encoded.context, self.rgb(images))
        expected = encoded.ids.detach().cpu().unsqueeze(0).expand(images.shape[0], -1)
        proc_ids = inputs["input_ids"].cpu()
        if proc_ids.shape != expected.shape or not torch.equal(proc_ids, expected):
            raise ModelError("the processor laid out the noisy image's tokens differently from the clean image's; "
                             "certkit cannot apply text noise to a layout that changes with the pixels")
        return inputs
