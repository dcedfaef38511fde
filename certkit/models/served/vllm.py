"""The token-in protocol (``protocol="vllm"``): noisy token ids through vLLM's ``/inference/v1/generate``.

certkit encodes each case with the family's own processor files (local; no weights needed), sends the *noisy token
ids* of every sample to vLLM's ``/inference/v1/generate`` (start vLLM with ``--enable-scale-out``) with the noisy
image as a lossless image and its content hash, and decodes the returned token ids locally. Nothing is
re-tokenized, so the served model is the same classifier as the model in-process (up to the 8-bit rounding of the
image, which PIL-backend processors do in-process too). For each case, one clean request with
``return_token_ids`` checks that the server laid the prompt and image out exactly as the local processor does.
Guard VLMs (``labels=...``) generate one token restricted to the label words' first tokens
(``allowed_token_ids``): the argmax of the label logits, as in-process.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..base import EncodedCase, ModelError
from ..encoding import ProcessorEncoding, quantise
from ..http import ServerError
from .base import ServedVLM, image_data_uri
from .canary import CANARY_PROMPT, CANARY_TOKENS, CANARY_TOP

__all__ = ["VLLMTokenIn"]


def _load_processor(processor, trust_remote_code: bool):
    """A processor object, or the one saved in a local directory (with the config that names its special tokens)."""
    if processor is None:
        return None, None
    if isinstance(processor, (str, Path)):
        from transformers import AutoConfig, AutoProcessor

        path = Path(processor)
        if not path.is_dir():
            raise ModelError(f"processor {str(path)!r} is not a directory; pass the model's folder (config.json, tokenizer "
                             "and processor files; the weights are not needed) or a loaded processor")
        try:
            return (AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code),
                    AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code))
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ModelError(f"cannot load the processor and config in {str(path)!r}: {exc}") from None
    return processor, None


class VLLMTokenIn(ServedVLM):
    """A VLM served by vLLM, spoken to in token ids (see the module docstring).

    ``processor``: the model's local folder (or a loaded processor, then ``config`` its transformers config);
    ``answer_prefix``: text that opens the assistant's answer; ``trust_remote_code`` for the processor. The shared
    settings are :class:`~certkit.models.served.base.ServedVLM`'s. Default image format BMP (13x faster to encode
    than PNG, since noise does not compress; vLLM reads it).
    """

    protocol = "vllm"
    route = "/inference/v1/generate"
    default_image_format = "bmp"
    _logprob_key = "token_id"

    def _setup(self, labels, *, processor=None, config=None, answer_prefix: str = "", trust_remote_code: bool = False,
               words=None) -> None:
        processor, loaded_config = _load_processor(processor, trust_remote_code)
        if processor is None:
            raise ModelError("protocol='vllm' sends token ids that certkit encodes itself: pass processor=<the model's local "
                             "folder> (tokenizer, processor and config files; no weights needed)")
        if words is not None:
            raise ModelError("words= is for the chat protocol; the token-in protocol noises the tokenizer's own ids")
        config = config if config is not None else loaded_config
        if config is None:
            raise ModelError("pass config= (the model's transformers config) with a loaded processor, or processor=<folder>")
        self.encoding = ProcessorEncoding(processor, config, system_prompt=self.system_prompt, prompt_format=self.prompt_format,
                                          answer_prefix=answer_prefix)
        self.alphabet = torch.tensor(self.encoding.alphabet, dtype=torch.long)
        self.mask_id = self.encoding.mask_id
        self.labels, self._label_ids = self.encoding.label_token_ids(labels)

    def _probe_protocol(self) -> dict:
        """The server's tokenizer must give the local ids for a templated prompt, and the token-in route must be on."""
        full, _, _ = self.encoding.templated("Hello")
        local = self.encoding.tokenizer(full, add_special_tokens=False)["input_ids"]
        try:
            remote = self.endpoint.post("/tokenize", {"model": self.model_id, "prompt": full, "add_special_tokens": False})
        except ServerError as exc:
            raise ModelError(f"the server's /tokenize refused a templated prompt ({exc}); is this a vLLM server?") from None
        if list(remote.get("tokens", [])) != list(local):
            raise ModelError(f"the server tokenizes the templated prompt as {remote.get('tokens', [])[:12]}..., the local processor "
                             f"as {local[:12]}...; processor= must be the served model's own files")
        # every id noise may draw, and every id an answer may hold, must spell the same text on both sides
        alphabet = list(self.encoding.alphabet)
        spelled = self.endpoint.post("/detokenize", {"model": self.model_id, "tokens": alphabet}).get("prompt")
        if spelled != self.encoding.tokenizer.decode(alphabet):
            raise ModelError("the server's tokenizer spells the replacement alphabet differently from the local processor's; "
                             "processor= must be the served model's own files")
        body = {"model": self.model_id, "token_ids": local[:8] or [int(self.alphabet[0])],
                "sampling_params": {"max_tokens": 1, "temperature": 0.0}, "output_mode": "tokens"}
        try:
            self.endpoint.post(self.route, body)
        except ServerError as exc:
            if exc.status == 404:
                raise ModelError(f"{self.endpoint.base_url} has no token-in route /inference/v1/generate; start vLLM with "
                                 "--enable-scale-out, or use protocol='chat'") from None
            raise
        return {"system_fingerprint": None, "model": self.model_id}

    def _canary_body(self, uri: str, digest: str) -> dict:
        full, _, _ = self.encoding.templated(CANARY_PROMPT)
        return {"model": self.model_id, "token_ids": list(self.encoding.tokenizer(full)["input_ids"]), "output_mode": "tokens",
                "sampling_params": {"max_tokens": CANARY_TOKENS, "temperature": 0.0, "logprobs": CANARY_TOP},
                "content_parts": [{"type": "image_url", "url": uri, "uuid": digest}]}

    def _canary_answer(self, choice: dict) -> list[int]:
        answer = choice.get("token_ids")
        if not isinstance(answer, list):
            raise ServerError(f"the server's canary answer has no token_ids: {json.dumps(choice)[:200]}")
        return answer

    def _encode(self, case, image: torch.Tensor) -> EncodedCase:
        """The templated prompt's own token ids (the server expands the image placeholder), the prompt's positions,
        and one clean request that checks the server expands them to the local processor's ids."""
        enc = self.encoding
        full, start, end = enc.templated(case.prompt)
        plain = enc.tokenizer(full, return_offsets_mapping=True)
        ids, offsets = plain["input_ids"], plain["offset_mapping"]
        enc.refuse_special_text(ids, offsets, full, start, end, case.id)
        specials = enc.special_ids
        editable = [b > a and a >= start and b <= end and tid not in specials for tid, (a, b) in zip(ids, offsets)]
        if not any(editable):
            raise ModelError(f"case {case.id!r}: no token of the prompt could be located in the templated input (is the prompt empty?)")
        expanded = enc.encode(case, "cpu").ids.tolist()
        reply = self.endpoint.post_many(self.route, [self._token_body(ids, quantise(enc.rgb(image.unsqueeze(0)))[0], seed=0,
                                                                      max_tokens=1, return_token_ids=True)])[0]
        served = reply.get("prompt_token_ids")
        if served != expanded:
            raise ModelError(f"case {case.id!r}: the server expanded the prompt to {len(served or [])} token ids that differ from the "
                             f"local processor's {len(expanded)}; processor= must be the served model's own files")
        return EncodedCase(torch.tensor(ids, dtype=torch.long), torch.tensor(editable), image, context=full)

    def _sample_body(self, ids: torch.Tensor, image: np.ndarray, seed: int, encoded: EncodedCase) -> dict:
        return self._token_body(ids.tolist(), image, seed)

    def _token_body(self, ids: list[int], image: np.ndarray, seed: int, max_tokens: int | None = None,
                    return_token_ids: bool = False) -> dict:
        uri, digest = image_data_uri(image, self.image_format)
        params = {"max_tokens": max_tokens or self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                  "skip_special_tokens": True}
        if self.temperature > 0:
            params["seed"] = seed
        if self.labels is not None:
            params.update(max_tokens=1, temperature=0.0, allowed_token_ids=list(self._label_ids))
        body = {"model": self.model_id, "token_ids": [int(i) for i in ids], "sampling_params": params, "output_mode": "tokens",
                # the content hash is vLLM's cache key for the image: a per-sample key never serves a stale image
                "content_parts": [{"type": "image_url", "url": uri, "uuid": digest}]}
        if return_token_ids:
            body["return_token_ids"] = True
        return body

    def _answer(self, reply: dict) -> str:
        tokens = self._choice(reply).get("token_ids")
        if not isinstance(tokens, list):
            raise ServerError(f"the server's answer has no token_ids: {json.dumps(reply)[:200]}")
        if self.labels is not None:
            if len(tokens) != 1 or tokens[0] not in self._label_ids:
                raise ServerError(f"the server answered token ids {tokens} where one of the label tokens {list(self._label_ids)} "
                                  "was required (allowed_token_ids); the server ignored the restriction")
            return self.labels[list(self._label_ids).index(tokens[0])]
        return self.encoding.tokenizer.decode(tokens, skip_special_tokens=True)
