"""One inference server as certkit talks to it: bounded concurrency, timeouts, and retries that never change a sample.

Guarantee: a request is retried only where the server did not answer it (a transport error: refused or reset
connection, timeout) or said it was momentarily unable to (HTTP 429 and 5xx), and every retry sends the
byte-identical body, so a retried sample is the same sample, never a redrawn one. Any other answer that is
not a 2xx JSON object is a :class:`ServerError` carrying the server's own message; certkit drops no sample.

Every retry and every new TCP connection moves :attr:`Endpoint.epoch`: a caller that must know whether the same
server process answered a whole batch (a restarted server drops its connections, so the client reconnects or
retries) compares the epoch before and after (:class:`~certkit.models.ServedVLM` re-asks its canary then).

The client is httpx's ``AsyncClient`` (HTTP/1.1 keep-alive, connection pool) driven by an event loop in one
background thread per endpoint, so synchronous callers (pytest, the smoothing engine) fan a batch of requests
out concurrently without owning an event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from typing import Mapping, Sequence

from .base import ModelError

__all__ = ["Endpoint", "ServerError"]

#: HTTP statuses that say "not now" rather than "not this request": the same body may succeed later
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_BACKOFF_S = 30.0


class ServerError(ModelError):
    """A server that refused a request or could not be reached; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _server_message(response) -> str:
    """The server's own explanation: OpenAI-style ``error.message``, FastAPI's ``detail``, or the body's start."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500].strip() or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        for key in ("detail", "message", "error"):
            if data.get(key):
                return str(data[key])[:500]
    return json.dumps(data)[:500]


class Endpoint:
    """A server at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    ``concurrency`` bounds the requests in flight; ``timeout`` (seconds) bounds each attempt; ``retries`` is how
    many times a retryable failure is tried again (with exponential back-off, honouring ``Retry-After``).
    ``api_key`` is sent as a bearer token. :class:`~certkit.models.base.ModelError` for a URL that is not http(s),
    a ``concurrency`` below 1, negative ``retries`` or a ``timeout`` that is not a positive number.
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, concurrency: int = 16, timeout: float = 120.0,
                 retries: int = 4, backoff: float = 0.5, headers: Mapping[str, str] | None = None):
        import httpx

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ModelError(f"base_url must be an http:// or https:// URL, e.g. 'http://127.0.0.1:8000', got {base_url!r}")
        for name, value in (("concurrency", concurrency), ("retries", retries + 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ModelError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self._headers = {"Content-Type": "application/json", **dict(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._httpx = httpx
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"certkit-http {self.base_url}", daemon=True)
        self._thread.start()
        self._client = None
        self.retried = 0  # attempts that failed and were tried again
        self.connected = 0  # TCP connections opened (first ones, and reconnections after a server closed them)

    @property
    def epoch(self) -> int:
        """Moves on every retry and every new connection: where it did not move between two moments, every answer
        in between came over connections that were open before, i.e. from the same server process."""
        return self.retried + self.connected

    # ------------------------------------------------------------------ sync API

    def get(self, path: str) -> dict:
        """The JSON object the server answers ``GET path`` with, retried as the module says; :class:`ServerError`
        for any other outcome."""
        return self._wait(self._request("GET", path, None))

    def post(self, path: str, body: dict) -> dict:
        """The JSON object the server answers ``POST path`` with ``body`` (as JSON), every retry sending the same
        bytes; :class:`ServerError` for any other outcome."""
        return self._wait(self._request("POST", path, json.dumps(body).encode()))

    def post_many(self, path: str, bodies: Sequence[dict]) -> list[dict]:
        """One answer per body, in order, at most ``concurrency`` in flight; the first failure cancels the rest."""
        payloads = [json.dumps(b).encode() for b in bodies]
        return self._wait(self._gather(path, payloads))

    def close(self) -> None:
        """Close the connections and stop the background thread (idempotent); the endpoint cannot be used after."""
        if self._loop.is_closed():
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    # ------------------------------------------------------------------ async internals

    def _wait(self, coro):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupt or the requirement's deadline: stop the requests still in flight
            raise

    async def _client_once(self):
        if self._client is None:
            limits = self._httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            timeout = self._httpx.Timeout(self.timeout, connect=min(10.0, self.timeout))
            self._client = self._httpx.AsyncClient(base_url=self.base_url, headers=self._headers, limits=limits, timeout=timeout)
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client

    async def _gather(self, path: str, payloads: list[bytes]) -> list[dict]:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._request("POST", path, p)) for p in payloads]
        except BaseExceptionGroup as failed:  # the first failure is the requirement's error; the rest were cancelled
            raise failed.exceptions[0] from None
        return [t.result() for t in tasks]

    async def _request(self, method: str, path: str, payload: bytes | None) -> dict:
        client = await self._client_once()
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.retries + 1):
            wait = None
            async with self._semaphore:
                try:
                    response = await client.request(method, path, content=payload, extensions={"trace": self._trace})
                except self._httpx.TransportError as exc:  # no answer: the same body may go through on a retry
                    last, status = f"{type(exc).__name__}: {exc or 'no answer'}", None
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        try:
                            data = response.json()
                        except ValueError:
                            raise ServerError(f"{method} {url} answered {status} with a body that is not JSON: {response.text[:200]!r}",
                                              status) from None
                        if not isinstance(data, dict):
                            raise ServerError(f"{method} {url} answered {status} with JSON that is not an object: {str(data)[:200]}",
                                              status)
                        return data
                    last = f"HTTP {status}: {_server_message(response)}"
                    if status not in RETRYABLE_STATUS:
                        raise ServerError(f"{method} {url} was refused with {last}", status)
                    wait = _retry_after(response.headers.get("retry-after"))
            if attempt < self.retries:
                self.retried += 1
                backoff = self.backoff * (2 ** attempt) * (0.5 + random.random())
                await asyncio.sleep(min(_MAX_BACKOFF_S, wait if wait is not None else backoff))
        raise ServerError(f"{method} {url} failed {self.retries + 1} time(s), the last with {last}; is the server up and "
                          "not overloaded? (raise the endpoint's retries or timeout, or lower its concurrency)", status)

    async def _trace(self, event: str, info: dict) -> None:
        """httpcore's request trace (httpx's documented ``trace`` extension): counts the TCP connections opened."""
        if event == "connection.connect_tcp.complete":
            self.connected += 1


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own back-off
        return None
