"""The OpenAI-compatible chat protocol (``protocol="chat"``): ``/v1/chat/completions`` on any such server.

The prompt goes as text and the noisy image as a lossless PNG data URI. The image's clamp to [0, 1] and rounding
to 8 bits are a fixed function after the noise, so they are part of the certified classifier (recorded in the
fingerprint). Token-level text noise cannot go through a text API soundly: the server re-tokenizes the noisy text,
and a sample whose tokens change is another sample. Text noise is therefore allowed only over a *word* alphabet
(``words=[...]``): a prompt is a sequence of words joined by single spaces, noise replaces whole words with words
of the alphabet, and the round trip text -> words -> text is checked when a case is encoded. A certificate is then
over d *word* edits. Without ``words``, the adapter takes image noise only, and refuses text noise with a message.
Guard VLMs in chat read the first answer token's ``top_logprobs`` (servers that return them: vLLM, SGLang, OpenAI).
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import torch

from ..base import EncodedCase, ModelError
from ..http import ServerError
from .base import ServedVLM, image_data_uri
from .canary import CANARY_PROMPT, CANARY_TOKENS, CANARY_TOP

__all__ = ["OpenAIChat"]

_TOP_LOGPROBS = 20
_SPACE = re.compile(r"\s")


class OpenAIChat(ServedVLM):
    """A VLM behind an OpenAI-compatible chat API (see the module docstring).

    ``words``: the word alphabet that allows text noise (whole-word replacements). The shared settings are
    :class:`~certkit.models.served.base.ServedVLM`'s. Default image format PNG (every chat API reads it).
    """

    protocol = "chat"
    route = "/v1/chat/completions"
    default_image_format = "png"
    _logprob_key = "token"

    def _setup(self, labels, *, words=None, answer_prefix: str = "", processor=None, config=None, trust_remote_code: bool = False) -> None:
        if processor is not None or config is not None or trust_remote_code:
            raise ModelError("processor=, config= and trust_remote_code= are for protocol='vllm', where certkit encodes the token ids "
                             "itself; the chat protocol sends text and the server tokenizes it: leave them out")
        if answer_prefix:
            raise ModelError("answer_prefix needs protocol='vllm': an OpenAI chat request cannot open the assistant's answer")
        self.words = self._word_alphabet(words)
        self.alphabet = torch.arange(len(self.words or ()), dtype=torch.long)
        self.labels, self._label_ids = self._chat_labels(labels), []

    @staticmethod
    def _word_alphabet(words) -> tuple[str, ...] | None:
        if words is None:
            return None
        if isinstance(words, str):
            raise ModelError("words must be a list of words (the alphabet), not one string")
        words = tuple(words)
        bad = [w for w in words if not isinstance(w, str) or not w or _SPACE.search(w)]
        if bad:
            raise ModelError(f"words must be non-empty strings without whitespace (a word is what noise replaces whole); "
                             f"got {bad[:3]!r}")
        if len(set(words)) != len(words):
            dup = sorted({w for w in words if words.count(w) > 1})
            raise ModelError(f"words holds duplicates {dup[:5]!r}; each word of the alphabet must appear once")
        if len(words) < 2:
            raise ModelError("words needs at least two words for noise to choose between")
        return words

    @staticmethod
    def _chat_labels(labels) -> dict[str, str] | None:
        if labels is None:
            return None
        if isinstance(labels, str):
            raise ModelError(f"labels must be a mapping label -> word or a list of words, got the string {labels!r}")
        words = dict(labels) if isinstance(labels, Mapping) else {str(w): str(w) for w in labels}
        if len(words) < 2:
            raise ModelError(f"labels needs at least two labels to choose between, got {list(words)}")
        stripped = [w.strip() for w in words.values()]
        if len(set(stripped)) != len(stripped) or not all(stripped):
            raise ModelError(f"label words {list(words.values())} must be distinct and non-empty once spaces are stripped")
        return {str(k): str(v) for k, v in words.items()}

    def _probe_protocol(self) -> dict:
        """One one-token request: the server's ``system_fingerprint`` and model, and (label mode) its top logprobs."""
        image = np.full((8, 8, 3), 127, dtype=np.uint8)
        reply = self.endpoint.post(self.route, self._chat_body("Hello", image, seed=0, max_tokens=1))
        server = {"system_fingerprint": reply.get("system_fingerprint") or None, "model": reply.get("model") or self.model_id}
        if self.labels is not None:
            self._top_logprobs(reply)  # raises where the server returned none
        return server

    def _canary_body(self, uri: str, digest: str) -> dict:
        return {"model": self.model_id, "temperature": 0.0, "max_tokens": CANARY_TOKENS, "logprobs": True,
                "top_logprobs": CANARY_TOP, "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": CANARY_PROMPT}]}]}

    def _canary_answer(self, choice: dict) -> str:
        return (choice.get("message") or {}).get("content") or ""

    def _encode(self, case, image: torch.Tensor) -> EncodedCase:
        """No ids without a word alphabet (image noise only); with one, the prompt's words as alphabet indices."""
        if self.words is None:
            return EncodedCase(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool), image, context=case.prompt)
        words = case.prompt.split()
        if " ".join(words) != case.prompt:
            raise ModelError(f"case {case.id!r}: the prompt {case.prompt[:80]!r} is not words joined by single spaces, so it does not "
                             "round-trip through the word alphabet; normalise its whitespace")
        index = {w: i for i, w in enumerate(self.words)}
        missing = [w for w in words if w not in index]
        if missing:
            raise ModelError(f"case {case.id!r}: prompt words {missing[:5]!r} are not in the word alphabet (words=...); add them "
                             "or rephrase the prompt")
        ids = torch.tensor([index[w] for w in words], dtype=torch.long)
        return EncodedCase(ids, torch.ones(len(words), dtype=torch.bool), image, context=case.prompt)

    def _sample_body(self, ids: torch.Tensor, image: np.ndarray, seed: int, encoded: EncodedCase) -> dict:
        text = encoded.context if self.words is None else " ".join(self.words[i] for i in ids.tolist())
        return self._chat_body(text, image, seed)

    def _chat_body(self, text: str, image: np.ndarray, seed: int, max_tokens: int | None = None) -> dict:
        uri, _ = image_data_uri(image, self.image_format)
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                     {"type": "text", "text": self.prompt_format.replace("{prompt}", text)}]})
        body = {"model": self.model_id, "messages": messages, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": max_tokens or (1 if self.labels is not None else self.max_new_tokens)}
        if self.temperature > 0:
            body["seed"] = seed
        if self.labels is not None:
            body.update(logprobs=True, top_logprobs=_TOP_LOGPROBS, temperature=0.0)
        return body

    def _top_logprobs(self, reply: dict) -> list[dict]:
        logprobs = self._choice(reply).get("logprobs") or {}
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not content or not isinstance(content[0], dict) or not content[0].get("top_logprobs"):
            raise ModelError(f"{self.endpoint.base_url} returned no top_logprobs; label mode through the chat protocol needs a "
                             "server that returns them (vLLM, SGLang, OpenAI). Use labels=None with an oracle that reads the "
                             "answer, or protocol='vllm'")
        return content[0]["top_logprobs"]

    def _answer(self, reply: dict) -> str:
        if self.labels is None:
            content = (self._choice(reply).get("message") or {}).get("content")
            return content if isinstance(content, str) else ""
        best, best_lp = None, -np.inf
        for entry in self._top_logprobs(reply):
            token = str(entry.get("token", "")).strip()
            for label, word in self.labels.items():
                if token == word.strip() and float(entry.get("logprob", -np.inf)) > best_lp:
                    best, best_lp = label, float(entry["logprob"])
        if best is None:
            raise ServerError(f"none of the label words {list(self.labels.values())} is among the {_TOP_LOGPROBS} most likely first "
                              "tokens of the server's answer; certkit will not guess the label (check the label words and the "
                              "prompt_format)")
        return best
