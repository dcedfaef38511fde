"""A vision-language model behind an inference server: vLLM, SGLang, ``transformers serve``, any OpenAI-compatible API.

pytest stays the single controller: the noise, the sample streams, the statistics and the report are certkit's;
the server only answers. One endpoint base, one class per wire protocol (as lm-evaluation-harness's API models):

* ``base``: :class:`ServedVLM`, what every protocol shares: the settings and their checks, the HTTP endpoint
  (:mod:`certkit.models.http`: bounded concurrency, timeouts, retries that resend the byte-identical body), the
  start-up probe, the fingerprint, the per-answer identity checks and the run loop.
* ``canary``: the behavioural identity (a fixed greedy request whose answer is part of the fingerprint and is
  asked again after any retry or reconnect).
* ``vllm``: :class:`VLLMTokenIn` (``protocol="vllm"``), noisy token ids through vLLM's token-in route.
* ``chat``: :class:`OpenAIChat` (``protocol="chat"``), ``/v1/chat/completions``: image noise, and text noise
  over a word alphabet.

``ServedVLM(base_url, model, protocol=..., ...)`` builds the protocol's class.
"""

from .base import PROTOCOLS, ServedModelWarning, ServedVLM, image_data_uri
from .canary import CANARY_PROMPT, canary_hash, canary_image, same_canary
from .chat import OpenAIChat
from .vllm import VLLMTokenIn

__all__ = ["ServedVLM", "OpenAIChat", "VLLMTokenIn", "ServedModelWarning", "PROTOCOLS", "CANARY_PROMPT", "canary_image",
           "canary_hash", "same_canary", "image_data_uri"]
