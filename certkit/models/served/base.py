"""The endpoint base every served-model protocol shares: settings, HTTP, probe, identity, the run loop.

At most ``concurrency`` requests in flight, a ``timeout`` per attempt, retries of transport errors, 429 and 5xx
only, with the byte-identical body (:mod:`certkit.models.http`); any other refusal is an error of that requirement
carrying the server's message. A start-up probe checks that the server lists ``model``, records its version and
``system_fingerprint``, and (label mode) that log-probabilities or label tokens come back. The fingerprint covers
every setting that decides an answer and what the server said about itself, its canary answer included
(:mod:`.canary`); the canary is asked again after every batch during which the endpoint retried or reconnected.

Temperature 0 is a fixed function only on a batch-invariant server (vLLM ``VLLM_BATCH_INVARIANT=1``, SGLang's
deterministic inference): declare it with ``batch_invariant=True`` (recorded); without it certkit warns once.
Temperature > 0 sends a fresh seed per sample, derived from the sample stream.

A protocol is a subclass that names its ``protocol``, its generation ``route`` and ``default_image_format``, and
implements the hooks: ``_setup`` (its own settings), ``_probe_protocol``, ``_encode``, ``_sample_body``,
``_answer``, ``_canary_body`` and ``_canary_answer``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import warnings
from typing import Mapping, Sequence

import numpy as np
import torch

from ...sampling import derive_seed
from ..base import EncodedCase, ModelError
from ..encoding import ProcessorEncoding, check_prompt_format, quantise
from ..http import Endpoint, ServerError
from .canary import CANARY_DECIMALS, CANARY_TOP, canary_hash, canary_image, same_canary

__all__ = ["ServedVLM", "ServedModelWarning", "PROTOCOLS", "image_data_uri"]

PROTOCOLS = ("chat", "vllm")
_IMAGE_FORMATS = {"png": "image/png", "bmp": "image/bmp"}
_SEED_BITS = 31  # servers that store the seed in a signed 32-bit int accept it


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


class ServedVLM:
    """A served VLM as a certkit model adapter. ``ServedVLM(..., protocol=...)`` builds the protocol's class
    (:class:`~certkit.models.served.chat.OpenAIChat` for ``"chat"``, the default;
    :class:`~certkit.models.served.vllm.VLLMTokenIn` for ``"vllm"``), as ``pathlib.Path`` builds a ``PosixPath``.

    ``base_url``: the server, e.g. ``http://127.0.0.1:8000``. ``model``: the model id the server lists.
    ``revision``: what identifies the served weights (a weights hash, a commit, a tag): certkit cannot hash remote
    weights, and its count cache trusts this string. ``labels``: label mode (a guard VLM): a mapping label -> word
    or a list of words. ``image_format``: "png" or "bmp", both lossless (default: the protocol's). The protocol's
    own settings: ``processor``, ``config``, ``answer_prefix``, ``trust_remote_code`` (token-in); ``words``
    (chat). Every setting is checked before the first request; the constructor then probes the server and asks
    the canary, and ``fingerprint`` covers the settings, the server's identity and the canary's answer.
    :class:`~certkit.models.ModelError` for an unknown protocol or a bad setting (before any request), or a server
    that does not list ``model`` or fails the protocol's probe; :class:`~certkit.models.ServerError` where the
    server cannot be reached or refuses.
    """

    protocol: str
    #: the protocol's generation route and the image format it reads fastest
    route: str
    default_image_format: str
    #: the token-in protocol's encoding and the chat protocol's word alphabet (None where the protocol has none)
    encoding: ProcessorEncoding | None = None
    words: tuple[str, ...] | None = None
    _logprob_key: str  # what names a token in the protocol's logprobs
    _classes: dict[str, type[ServedVLM]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ServedVLM._classes[cls.protocol] = cls

    def __new__(cls, *args, protocol: str | None = None, **kwargs):
        if cls is ServedVLM:
            protocol = "chat" if protocol is None else protocol
            if protocol not in PROTOCOLS:
                raise ModelError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
            cls = ServedVLM._classes[protocol]
        elif protocol is not None and protocol != cls.protocol:
            raise ModelError(f"{cls.__name__} speaks protocol={cls.protocol!r}, got protocol={protocol!r}")
        return super().__new__(cls)

    def __init__(self, base_url: str, model: str, *, revision: str, protocol: str | None = None,
                 labels: Mapping[str, str] | Sequence[str] | None = None, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, system_prompt: str | None = None, prompt_format: str = "{prompt}",
                 batch_invariant: bool = False, api_key: str | None = None, concurrency: int = 16, timeout: float = 120.0,
                 retries: int = 4, batch_size: int = 64, image_format: str | None = None, endpoint: Endpoint | None = None,
                 **protocol_settings):
        # protocol: chosen in __new__
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
        if image_format is None:
            image_format = self.default_image_format
        if image_format not in _IMAGE_FORMATS:
            raise ModelError(f"image_format must be one of {sorted(_IMAGE_FORMATS)} (lossless), got {image_format!r}")
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
        self.name = f"{model} @ {self.endpoint.base_url} ({self.protocol})"
        self._setup(labels, **protocol_settings)
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
            "evidence": (f"greedy tokens and top-{CANARY_TOP} logprobs (hashed at {CANARY_DECIMALS} decimals)"
                         if self._canary["logprobs"] is not None else
                         "greedy answer only: the server returned no logprobs, so a change that keeps this answer is not seen"),
            "answer": self._canary["answer"]}
        if self.temperature == 0 and not self.batch_invariant and self.output_kind == "text":
            warnings.warn(ServedModelWarning(
                f"{self.name}: greedy decoding (temperature 0) is a fixed function of the input only on a batch-invariant "
                "server; start vLLM with VLLM_BATCH_INVARIANT=1 (or SGLang's deterministic inference) and pass "
                "batch_invariant=True, or sample at temperature > 0 (certkit seeds every sample)"), stacklevel=2)
        self._settings = {
            "protocol": self.protocol, "model": model, "revision": revision,
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

    # ------------------------------------------------------------------ the protocol's hooks

    def _setup(self, labels, **settings) -> None:
        """The protocol's own settings, checked before any request: sets ``alphabet``, ``labels``, ``_label_ids``."""
        raise NotImplementedError

    def _probe_protocol(self) -> dict:
        """The protocol's start-up checks; returns the server's ``system_fingerprint`` and answering ``model``."""
        raise NotImplementedError

    def _encode(self, case, image: torch.Tensor) -> EncodedCase:
        raise NotImplementedError

    def _sample_body(self, ids: torch.Tensor, image: np.ndarray, seed: int, encoded: EncodedCase) -> dict:
        """The request for one noisy sample (its token or word ids, its 8-bit image, its seed)."""
        raise NotImplementedError

    def _answer(self, reply: dict) -> str:
        """The answer (text, or a label in label mode) in a reply whose identity was checked."""
        raise NotImplementedError

    def _canary_body(self, uri: str, digest: str) -> dict:
        raise NotImplementedError

    def _canary_answer(self, choice: dict):
        raise NotImplementedError

    # ------------------------------------------------------------------ set-up

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
        server.update(self._probe_protocol())
        return server

    # ------------------------------------------------------------------ canary

    def _ask_canary(self) -> dict:
        """The canary's answer: ``{"answer": text (chat) or token ids (vllm), "logprobs": [(token, logprob, top-k
        [(token, logprob)]) per answer token] or None where the server returned none}``."""
        uri, digest = image_data_uri(canary_image(), self.image_format)
        choice = self._choice(self.endpoint.post(self.route, self._canary_body(uri, digest)))
        answer, key = self._canary_answer(choice), self._logprob_key
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

    # ------------------------------------------------------------------ encoding and running

    def encode(self, case) -> EncodedCase:
        """The case's ids, editable positions and image, as the protocol sends them (checked against the server)."""
        image = torch.tensor(case.image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 2:
            raise ModelError(f"case {case.id!r}: image of shape {tuple(image.shape)} cannot be read by a VLM; "
                             "give an RGB or greyscale image of at least 2x2 pixels")
        return self._encode(case, image)

    def run(self, ids: torch.Tensor, images: torch.Tensor, seed: int = 0, *, encoded: EncodedCase) -> list[str]:
        """One answer per noisy sample, in order, all from the model the run started with: the batch's answers are
        returned only once the canary (re-asked after any retry or reconnect) and every answer's identity check out."""
        if self._changed is not None:  # the served model changed earlier in the run: no more answers from it
            raise ModelError(self._changed)
        pixels = quantise(ProcessorEncoding.rgb(images))
        seeds = [derive_seed(seed, i) & ((1 << _SEED_BITS) - 1) for i in range(len(pixels))]
        bodies = [self._sample_body(row, img, s, encoded) for row, img, s in zip(ids, pixels, seeds)]
        replies = self.endpoint.post_many(self.route, bodies)
        self._recheck_canary()  # before any answer of this batch is accepted
        answers = []
        for reply in replies:
            self._check_identity(reply)
            answers.append(self._answer(reply))
        return answers

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

    def close(self) -> None:
        """Close the endpoint's connections (idempotent); the adapter cannot run after."""
        self.endpoint.close()
