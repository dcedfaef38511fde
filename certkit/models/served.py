"""A vision-language model behind an inference server: vLLM, SGLang, ``transformers serve``, any OpenAI-compatible API.

pytest stays the single controller: the noise, the sample streams, the statistics and the report are certkit's;
the server only answers. Two protocols:

``protocol="vllm"`` (token-in): certkit encodes each case with the family's own processor files (local; no
weights needed), sends the *noisy token ids* of every sample to vLLM's ``/inference/v1/generate`` (start vLLM
with ``--enable-scale-out``) with the noisy image as a lossless PNG and its content hash, and decodes the
returned token ids locally. Nothing is re-tokenized, so the served model is the same classifier as the model
in-process (up to the 8-bit rounding of the image, which PIL-backend processors do in-process too). For each
case, one clean request with ``return_token_ids`` checks that the server laid the prompt and image out exactly
as the local processor does. Guard VLMs (``labels=...``) generate one token restricted to the label words' first
tokens (``allowed_token_ids``): the argmax of the label logits, as in-process.

``protocol="chat"`` (``/v1/chat/completions``, any OpenAI-compatible server): the prompt as text and the noisy
image as a lossless PNG data URI. The image's clamp to [0, 1] and rounding to 8 bits are a fixed function after
the noise, so they are part of the certified classifier (recorded in the fingerprint). Token-level text noise
cannot go through a text API soundly: the server re-tokenizes the noisy text, and a sample whose tokens change
is another sample. Text noise is therefore allowed only over a *word* alphabet (``words=[...]``): a prompt is a
sequence of words joined by single spaces, noise replaces whole words with words of the alphabet, and the
round trip text -> words -> text is checked when a case is encoded. A certificate is then over d *word* edits.
Without ``words``, the adapter takes image noise only, and refuses text noise with a message. Guard VLMs in
chat read the first answer token's ``top_logprobs`` (servers that return them: vLLM, SGLang, OpenAI).

Both: at most ``concurrency`` requests in flight, a ``timeout`` per attempt, retries of transport errors, 429 and
5xx only, with the byte-identical body (:mod:`certkit.models.http`); any other refusal is an error of that
requirement carrying the server's message. A start-up probe checks that the server lists ``model``, records its
version and ``system_fingerprint``, and (label mode) that log-probabilities or label tokens come back.

Identity. certkit cannot hash remote weights, and a server restarted on the same folder with other weights
reports the same path, revision and version. So every served model also has a *behavioural* identity, the
canary: one fixed request (``CANARY_PROMPT`` with :func:`canary_image`, token ids from the local processor for
token-in), answered greedily (temperature 0, ``_CANARY_TOKENS`` tokens) with its top-``_CANARY_TOP`` token
logprobs. Its hash (:func:`canary_hash`: the answer, and the logprobs rounded to 2 decimals) is part of the
fingerprint, so other weights that change the canary's answer get another fingerprint, and the count cache
does not serve the old model's counts for them; it is recorded in ``served.server["canary"]``. The fingerprint
also covers the ``revision`` you declare (a weights hash, commit or tag), the model id, the server's version
and ``system_fingerprint``, the protocol, encoding and sampling settings. Mid-run: after every batch during
which the endpoint retried a request or opened a new connection (a restarted server drops its connections;
:attr:`certkit.models.http.Endpoint.epoch`), the canary is asked again before the batch's answers are accepted;
an answer from another model (:func:`same_canary`: another greedy answer, or a logprob off by more than
0.05 nats) stops the run with a :class:`ModelError` naming both canary hashes and both fingerprints, none of
that batch's answers used, and the adapter refuses every later batch. So no certificate mixes two models.
The answering ``model`` and ``system_fingerprint`` are checked on every answer as well.

What the canary cannot see: a change that leaves the canary's answer as it was (its greedy tokens and, with
logprobs, every top-k logprob the same to 2 decimals for the fingerprint, within 0.05 nats mid-run), e.g. a
fine-tune that only alters answers far from the canary's input. Servers that return no logprobs (``transformers
serve``) give the greedy answer alone, which many changes keep (the demo assistant with every weight moved by
seeded noise of half its spread answers the canary as before, so it keeps its fingerprint):
``server["canary"]["evidence"]`` says so. Declare ``revision`` as a weights hash to cover those. A model switched behind a proxy or load balancer that keeps the
client's connection open (no retry, no reconnect) is not re-checked until the next reconnect. On a server whose
logprobs jitter between runs by more than the rounding (not batch-invariant, low precision), a restart may
give a fresh fingerprint: the cache is then not reused (samples are drawn again), which costs time, never soundness.

Temperature 0 is a fixed function only on a batch-invariant server (vLLM ``VLLM_BATCH_INVARIANT=1``, SGLang's
deterministic inference): declare it with ``batch_invariant=True`` (recorded); without it certkit warns once.
Temperature > 0 sends a fresh seed per sample, derived from the sample stream.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .base import EncodedCase, ModelError
from .encoding import ProcessorEncoding, check_prompt_format, quantise
from .http import Endpoint, ServerError

__all__ = ["ServedVLM", "ServedModelWarning", "PROTOCOLS", "CANARY_PROMPT", "canary_image", "canary_hash", "same_canary"]

PROTOCOLS = ("chat", "vllm")
_IMAGE_FORMATS = {"png": "image/png", "bmp": "image/bmp"}
_TOP_LOGPROBS = 20
#: the canary: one fixed request (this prompt, :func:`canary_image`), answered greedily with its top-k logprobs
CANARY_PROMPT = "Describe this image."
_CANARY_TOKENS = 8
_CANARY_TOP = 5
_CANARY_DECIMALS = 2  # logprobs enter the hash rounded to 2 decimals (nats): a deterministic server repeats them exactly
#: nats a re-check's logprobs may differ by (5% in probability): vLLM's CPU build (fp32) repeats them bit for bit,
#: with other requests in flight too; the margin is for low-precision kernels whose sums depend on the batch
_CANARY_TOLERANCE = 0.05
_SEED_BITS = 31  # servers that store the seed in a signed 32-bit int accept it
_SPACE = re.compile(r"\s")


class ServedModelWarning(UserWarning):
    """A served-model setting that weakens what a certificate means (e.g. greedy decoding on a server that
    batches requests without batch invariance)."""


def image_data_uri(image: np.ndarray, fmt: str = "png") -> tuple[str, str]:
    """(H, W, C) uint8 -> a lossless data URI and the SHA-256 of the pixels (the server's cache key for them)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format=fmt.upper(), **({"compress_level": 1} if fmt == "png" else {}))
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
    return f"data:{_IMAGE_FORMATS[fmt]};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}", digest


def canary_image() -> np.ndarray:
    """The canary's image: a fixed 32x32 RGB pattern drawn from a seeded generator (the same on every machine)."""
    return np.random.default_rng(20261204).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def canary_hash(record: dict) -> str:
    """SHA-256 of a canary answer: its greedy answer and, where the server gave them, every position's chosen token,
    its logprob and its top-k (token, logprob) pairs, sorted by token so that a near tie's order does not matter,
    logprobs rounded to ``_CANARY_DECIMALS`` decimals."""
    def r(x):
        return round(float(x), _CANARY_DECIMALS) + 0.0  # + 0.0: -0.0 and 0.0 hash alike

    positions = None if record["logprobs"] is None else [
        [tok, r(lp), sorted([t, r(v)] for t, v in top)] for tok, lp, top in record["logprobs"]]
    return hashlib.sha256(json.dumps({"answer": record["answer"], "logprobs": positions}, sort_keys=True).encode()).hexdigest()


def same_canary(a: dict, b: dict, tolerance: float = _CANARY_TOLERANCE) -> bool:
    """Whether two canary answers come from the same model. Without logprobs: the same greedy answer. With them, at
    each position: every logprob both top-k lists hold within ``tolerance`` nats, a token only one list holds no
    more than ``tolerance`` above the other list's last (it sat at the cut-off, where a near tie may swap it), and
    the same greedy token, or two greedy tokens within ``tolerance`` of each other in both lists (a near tie that
    jitter may break either way; the answers part there, so the comparison ends there). Then the same length."""
    if (a["logprobs"] is None) != (b["logprobs"] is None):
        return False
    if a["logprobs"] is None:
        return a["answer"] == b["answer"]
    for (tok_a, lp_a, top_a), (tok_b, lp_b, top_b) in zip(a["logprobs"], b["logprobs"]):
        da, db = dict(top_a), dict(top_b)
        for tok in da.keys() | db.keys():
            if tok in da and tok in db:
                if abs(da[tok] - db[tok]) > tolerance:
                    return False
            else:
                value, other = (da[tok], db) if tok in da else (db[tok], da)
                if other and value > min(other.values()) + tolerance:
                    return False
        if abs(lp_a - lp_b) > tolerance:
            return False
        if tok_a != tok_b:
            return tok_b in da and tok_a in db and abs(da[tok_b] - lp_a) <= tolerance and abs(db[tok_a] - lp_b) <= tolerance
    return len(a["logprobs"]) == len(b["logprobs"])


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


class ServedVLM:
    """A served VLM as a certkit model adapter (see the module docstring for both protocols).

    ``base_url``: the server, e.g. ``http://127.0.0.1:8000``. ``model``: the model id the server lists.
    ``revision``: what identifies the served weights (a weights hash, a commit, a tag): certkit cannot hash remote
    weights, and its count cache trusts this string. ``processor``: the model's local folder (or a loaded
    processor) for ``protocol="vllm"``; ``config`` a transformers config when passing a loaded processor.
    ``words``: the word alphabet that allows text noise through ``protocol="chat"``. ``image_format``: "png" or
    "bmp", both lossless (default BMP for vLLM, which reads it, PNG for chat APIs, which all read PNG).
    """

    def __init__(self, base_url: str, model: str, *, revision: str, protocol: str = "chat", processor=None, config=None,
                 labels: Mapping[str, str] | Sequence[str] | None = None, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, system_prompt: str | None = None, prompt_format: str = "{prompt}", answer_prefix: str = "",
                 words: Sequence[str] | None = None, batch_invariant: bool = False, api_key: str | None = None,
                 concurrency: int = 16, timeout: float = 120.0, retries: int = 4, batch_size: int = 64,
                 image_format: str | None = None, trust_remote_code: bool = False, endpoint: Endpoint | None = None):
        if protocol not in PROTOCOLS:
            raise ModelError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if not isinstance(model, str) or not model:
            raise ModelError(f"model must be the model id the server lists (GET /v1/models), got {model!r}")
        if not isinstance(revision, str) or not revision.strip():
            raise ModelError("revision must name the served weights (a weights hash, commit or tag): certkit cannot hash "
                             "remote weights, and its count cache and results trust this string")
        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
            raise ModelError(f"temperature must be a number >= 0, got {temperature!r}")
        if image_format is None:  # BMP encodes 13x faster (noise does not compress); PNG is what every chat API takes
            image_format = "bmp" if protocol == "vllm" else "png"
        if image_format not in _IMAGE_FORMATS:
            raise ModelError(f"image_format must be one of {sorted(_IMAGE_FORMATS)} (lossless), got {image_format!r}")
        self.protocol = protocol
        self.model_id = model
        self.revision = revision
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.batch_invariant = bool(batch_invariant)
        self.batch_size = batch_size
        self.image_format = image_format
        self.system_prompt = system_prompt
        self.prompt_format = check_prompt_format(prompt_format)
        self.device = torch.device("cpu")
        self.mask_id = None
        self.endpoint = endpoint or Endpoint(base_url, api_key=api_key, concurrency=concurrency, timeout=timeout, retries=retries)
        self.name = f"{model} @ {self.endpoint.base_url} ({protocol})"
        self.encoding = None
        self.words: tuple[str, ...] | None = None
        processor, loaded_config = _load_processor(processor, trust_remote_code)
        if protocol == "vllm":
            if processor is None:
                raise ModelError("protocol='vllm' sends token ids that certkit encodes itself: pass processor=<the model's local "
                                 "folder> (tokenizer, processor and config files; no weights needed)")
            if words is not None:
                raise ModelError("words= is for the chat protocol; the token-in protocol noises the tokenizer's own ids")
            config = config if config is not None else loaded_config
            if config is None:
                raise ModelError("pass config= (the model's transformers config) with a loaded processor, or processor=<folder>")
            self.encoding = ProcessorEncoding(processor, config, system_prompt=system_prompt, prompt_format=prompt_format,
                                              answer_prefix=answer_prefix)
            self.alphabet = torch.tensor(self.encoding.alphabet, dtype=torch.long)
            self.mask_id = self.encoding.mask_id
            self.labels, self._label_ids = self.encoding.label_token_ids(labels)
        else:
            if answer_prefix:
                raise ModelError("answer_prefix needs protocol='vllm': an OpenAI chat request cannot open the assistant's answer")
            self.words = self._word_alphabet(words)
            self.alphabet = torch.arange(len(self.words or ()), dtype=torch.long)
            self.labels, self._label_ids = self._chat_labels(labels), []
        self.output_kind = "text" if self.labels is None else "label"
        self.no_text_noise = None if len(self.alphabet) else (
            "a served model through the chat protocol is re-tokenized by the server, so token-level text noise cannot be "
            "certified through it; certify image noise only, pass words=[...] (a word alphabet) to noise whole words, "
            "or use protocol='vllm' (token-in)")
        self.server = self._probe()
        self._canary = self._ask_canary()
        self._canary_epoch = self.endpoint.epoch
        self._changed: str | None = None
        self.server["canary"] = {
            "hash": canary_hash(self._canary),
            "evidence": (f"greedy tokens and top-{_CANARY_TOP} logprobs (hashed at {_CANARY_DECIMALS} decimals)"
                         if self._canary["logprobs"] is not None else
                         "greedy answer only: the server returned no logprobs, so a change that keeps this answer is not seen"),
            "answer": self._canary["answer"]}
        if self.temperature == 0 and not self.batch_invariant and self.output_kind == "text":
            warnings.warn(ServedModelWarning(
                f"{self.name}: greedy decoding (temperature 0) is a fixed function of the input only on a batch-invariant "
                "server; start vLLM with VLLM_BATCH_INVARIANT=1 (or SGLang's deterministic inference) and pass "
                "batch_invariant=True, or sample at temperature > 0 (certkit seeds every sample)"), stacklevel=2)
        self._settings = {
            "protocol": protocol, "model": model, "revision": revision,
            "output": self.output_kind, "labels": self.labels, "label_ids": list(self._label_ids),
            "max_new_tokens": max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
            "batch_invariant": self.batch_invariant, "system_prompt": system_prompt, "prompt_format": prompt_format,
            "words": hashlib.sha256("\n".join(self.words).encode()).hexdigest() if self.words else None,
            "image_path": "clamp-uint8-lossless", "encoding": self.encoding.settings() if self.encoding else None,
        }
        self.fingerprint = self._fingerprint(self.server)

    def _fingerprint(self, server: dict) -> str:
        """SHA-256 of the settings and what the server said about itself (its canary included)."""
        settings = {**self._settings, "server": server}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

    # ------------------------------------------------------------------ set-up

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

    def _probe(self) -> dict:
        """What the server says about itself; refuses a server that does not list the model or cannot answer."""
        listed = self.endpoint.get("/v1/models")
        ids = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict)]
        if self.model_id not in ids:
            raise ModelError(f"the server at {self.endpoint.base_url} does not serve {self.model_id!r}; it lists {ids[:10]}")
        server: dict = {"version": None}
        try:
            server["version"] = self.endpoint.get("/version").get("version")
        except ServerError:  # not every server has /version; the model id, revision and fingerprint still identify it
            pass
        if self.protocol == "vllm":
            self._probe_tokens()
            server["system_fingerprint"] = None
            server["model"] = self.model_id
            return server
        image = np.full((8, 8, 3), 127, dtype=np.uint8)
        reply = self.endpoint.post("/v1/chat/completions", self._chat_body("Hello", image, seed=0, max_tokens=1))
        server["system_fingerprint"] = reply.get("system_fingerprint") or None
        server["model"] = reply.get("model") or self.model_id
        if self.labels is not None:
            self._top_logprobs(reply)  # raises where the server returned none
        return server

    def _probe_tokens(self) -> None:
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
            self.endpoint.post("/inference/v1/generate", body)
        except ServerError as exc:
            if exc.status == 404:
                raise ModelError(f"{self.endpoint.base_url} has no token-in route /inference/v1/generate; start vLLM with "
                                 "--enable-scale-out, or use protocol='chat'") from None
            raise

    # ------------------------------------------------------------------ canary

    def _ask_canary(self) -> dict:
        """The canary's answer: ``{"answer": text (chat) or token ids (vllm), "logprobs": [(token, logprob, top-k
        [(token, logprob)]) per answer token] or None where the server returned none}``."""
        uri, digest = image_data_uri(canary_image(), self.image_format)
        if self.protocol == "vllm":
            full, _, _ = self.encoding.templated(CANARY_PROMPT)
            body = {"model": self.model_id, "token_ids": list(self.encoding.tokenizer(full)["input_ids"]), "output_mode": "tokens",
                    "sampling_params": {"max_tokens": _CANARY_TOKENS, "temperature": 0.0, "logprobs": _CANARY_TOP},
                    "content_parts": [{"type": "image_url", "url": uri, "uuid": digest}]}
            choice = self._choice(self.endpoint.post("/inference/v1/generate", body))
            answer, key = choice.get("token_ids"), "token_id"
            if not isinstance(answer, list):
                raise ServerError(f"the server's canary answer has no token_ids: {json.dumps(choice)[:200]}")
        else:
            body = {"model": self.model_id, "temperature": 0.0, "max_tokens": _CANARY_TOKENS, "logprobs": True,
                    "top_logprobs": _CANARY_TOP, "messages": [{"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": CANARY_PROMPT}]}]}
            choice = self._choice(self.endpoint.post("/v1/chat/completions", body))
            answer, key = (choice.get("message") or {}).get("content") or "", "token"
        content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        logprobs = None
        if content:
            try:
                logprobs = [(c[key], float(c["logprob"]), [(t[key], float(t["logprob"])) for t in c.get("top_logprobs") or []])
                            for c in content]
            except (KeyError, TypeError, ValueError):
                raise ServerError(f"the server's canary logprobs are not in the {self.protocol!r} protocol's shape: "
                                  f"{json.dumps(content)[:200]}") from None
        return {"answer": answer, "logprobs": logprobs}

    def _recheck_canary(self) -> None:
        """Where the endpoint retried or reconnected since the last check (a restarted server drops its connections),
        ask the canary again; an answer from another model stops the run (this adapter refuses every later batch)."""
        if self._changed is None and self.endpoint.epoch != self._canary_epoch:
            record = self._ask_canary()
            self._canary_epoch = self.endpoint.epoch
            if not same_canary(self._canary, record):
                old, new = self.server["canary"]["hash"], canary_hash(record)
                fingerprint = self._fingerprint({**self.server, "canary": {**self.server["canary"], "hash": new,
                                                                           "answer": record["answer"]}})
                self._changed = (
                    f"the model served at {self.endpoint.base_url} changed during the run: after a reconnect or retry its "
                    f"canary answer hashes to {new[:16]} (fingerprint {fingerprint[:16]}), at the start to {old[:16]} "
                    f"(fingerprint {self.fingerprint[:16]}); none of this batch's answers were used. A certificate must "
                    "not mix two models: rerun against one deployment (the new model's fingerprint draws its own samples)")
        if self._changed is not None:
            raise ModelError(self._changed)

    # ------------------------------------------------------------------ encoding

    def encode(self, case) -> EncodedCase:
        image = torch.tensor(case.image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 2:
            raise ModelError(f"case {case.id!r}: image of shape {tuple(image.shape)} cannot be read by a VLM; give an RGB or greyscale image of at least 2x2 pixels")
        if self.protocol == "vllm":
            return self._encode_tokens(case, image)
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

    def _encode_tokens(self, case, image) -> EncodedCase:
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
        reply = self._post_tokens([self._token_body(ids, quantise(enc.rgb(image.unsqueeze(0)))[0], seed=0, max_tokens=1,
                                                    return_token_ids=True)])[0]
        served = reply.get("prompt_token_ids")
        if served != expanded:
            raise ModelError(f"case {case.id!r}: the server expanded the prompt to {len(served or [])} token ids that differ from the "
                             f"local processor's {len(expanded)}; processor= must be the served model's own files")
        return EncodedCase(torch.tensor(ids, dtype=torch.long), torch.tensor(editable), image, context=full)

    # ------------------------------------------------------------------ requests

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

    def _post_tokens(self, bodies: list[dict]) -> list[dict]:
        return self.endpoint.post_many("/inference/v1/generate", bodies)

    # ------------------------------------------------------------------ running

    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int = 0, *, encoded: EncodedCase) -> list[str]:
        from ..sampling import derive_seed

        if self._changed is not None:  # the served model changed earlier in the run: no more answers from it
            raise ModelError(self._changed)
        pixels = quantise(ProcessorEncoding.rgb(images))
        seeds = [derive_seed(seed, i) & ((1 << _SEED_BITS) - 1) for i in range(len(pixels))]
        if self.protocol == "vllm":
            bodies = [self._token_body(row.tolist(), img, s) for row, img, s in zip(ids, pixels, seeds)]
            replies = self._post_tokens(bodies)
            self._recheck_canary()  # before any answer of this batch is accepted
            return [self._token_answer(reply) for reply in replies]
        texts = [encoded.context if self.words is None else " ".join(self.words[i] for i in row.tolist()) for row in ids]
        bodies = [self._chat_body(text, img, s) for text, img, s in zip(texts, pixels, seeds)]
        replies = self.endpoint.post_many("/v1/chat/completions", bodies)
        self._recheck_canary()
        return [self._chat_answer(reply) for reply in replies]

    def _check_identity(self, reply: dict) -> None:
        """Stop the run if the server behind the endpoint changed (another model, or other weights or build)."""
        for key in ("system_fingerprint", "model"):
            value = reply.get(key) or None
            want = self.server.get(key)
            if key == "model" and value is None:
                continue
            if value != want:
                raise ServerError(f"the server's {key} changed during the run from {want!r} to {value!r}: the model behind "
                                  f"{self.endpoint.base_url} changed, and certificates would mix two models; rerun against one deployment")

    def _choice(self, reply: dict) -> dict:
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ServerError(f"the server's answer has no choices: {json.dumps(reply)[:200]}")
        return choices[0]

    def _token_answer(self, reply: dict) -> str:
        self._check_identity(reply)
        tokens = self._choice(reply).get("token_ids")
        if not isinstance(tokens, list):
            raise ServerError(f"the server's answer has no token_ids: {json.dumps(reply)[:200]}")
        if self.labels is not None:
            if len(tokens) != 1 or tokens[0] not in self._label_ids:
                raise ServerError(f"the server answered token ids {tokens} where one of the label tokens {list(self._label_ids)} "
                                  "was required (allowed_token_ids); the server ignored the restriction")
            return self.labels[list(self._label_ids).index(tokens[0])]
        return self.encoding.tokenizer.decode(tokens, skip_special_tokens=True)

    def _top_logprobs(self, reply: dict) -> list[dict]:
        logprobs = self._choice(reply).get("logprobs") or {}
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not content or not isinstance(content[0], dict) or not content[0].get("top_logprobs"):
            raise ModelError(f"{self.endpoint.base_url} returned no top_logprobs; label mode through the chat protocol needs a "
                             "server that returns them (vLLM, SGLang, OpenAI). Use labels=None with an oracle that reads the "
                             "answer, or protocol='vllm'")
        return content[0]["top_logprobs"]

    def _chat_answer(self, reply: dict) -> str:
        self._check_identity(reply)
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
                              "tokens of the server's answer; certkit will not guess the label (check the label words and the prompt_format)")
        return best

    def close(self) -> None:
        self.endpoint.close()
