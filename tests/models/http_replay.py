"""Real HTTP servers on loopback for the served-model contract tests: a replay of exchanges recorded against real
inference servers, a recorder in front of a live one, and a proxy that injects failures.

An exchange is matched on (method, path, canonical body). The canonical body replaces each image data URI by
the SHA-256 of its decoded pixels, so a recording stays valid across zlib / Pillow builds that compress the
same PNG to other bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

_DATA_URI = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")


def _pixels_hash(match: re.Match) -> str:
    from PIL import Image

    raw = base64.b64decode(match.group(0).split(",", 1)[1])
    pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    return "pixels:" + hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def canonical(method: str, path: str, body: bytes) -> str:
    text = _DATA_URI.sub(_pixels_hash, body.decode()) if body else ""
    if text:
        text = json.dumps(json.loads(text), sort_keys=True)
    return hashlib.sha256(f"{method} {path} {text}".encode()).hexdigest()


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) whose handler calls ``self.handle``."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest's output clean
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.handle(self, self.command, self.path, body)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def reply(handler, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ReplayServer(_Server):
    """Answers each request with the recorded response of the same canonical request; an unrecorded request gets
    HTTP 418 (not retryable) with a message, so a test that sends something else fails loudly."""

    def __init__(self, recording: Path | dict, overrides: dict | None = None):
        data = json.loads(Path(recording).read_text()) if not isinstance(recording, dict) else recording
        self.exchanges = {e["key"]: e for e in data["exchanges"]}
        self.overrides = overrides or {}
        self.received: list[tuple[str, str]] = []
        super().__init__()

    def handle(self, handler, method, path, body):
        key = canonical(method, path, body)
        self.received.append((path, key))
        exchange = self.exchanges.get(key)
        if exchange is None:
            self.reply(handler, 418, {"error": {"message": f"no recorded exchange for {method} {path}"}})
            return
        response = exchange["response"]
        for field, value in self.overrides.get(path, {}).items():
            response = {**response, field: value}
        self.reply(handler, exchange["status"], response)


class Forwarder(_Server):
    """Forwards every request to ``upstream``; with ``record``, keeps each exchange (for a recording file)."""

    def __init__(self, upstream: str, faults=None):
        import httpx

        self.upstream = httpx.Client(base_url=upstream, timeout=120)
        self.faults = faults  # callable(path, attempt_of_this_body, index) -> None | fault
        self.bodies: list[tuple[str, bytes]] = []
        self.attempts: dict[str, int] = {}
        self.exchanges: list[dict] = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, handler, method, path, body):
        key = canonical(method, path, body)
        with self.lock:
            self.bodies.append((path, body))
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            index = len(self.bodies) - 1
        fault = self.faults(path, attempt, index) if self.faults else None
        if fault == "reset":  # close the connection without an answer: a transport error for the client
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        if fault == "stall":
            time.sleep(3.0)
            handler.close_connection = True
            return
        if isinstance(fault, tuple):
            status, message, headers = fault
            self.reply(handler, status, {"error": {"message": message, "code": status}}, headers)
            return
        response = self.upstream.request(method, path, content=body, headers={"Content-Type": "application/json"})
        with self.lock:
            self.exchanges.append({"key": key, "path": path, "status": response.status_code, "response": response.json()})
        self.reply(handler, response.status_code, response.content)

    def save(self, path: Path, note: str) -> None:
        """Add this run's exchanges to the recording at ``path`` (tests that share a recording each add theirs)."""
        unique = {e["key"]: e for e in json.loads(path.read_text())["exchanges"]} if path.is_file() else {}
        unique.update({e["key"]: e for e in self.exchanges})
        path.write_text(json.dumps({"note": note, "exchanges": list(unique.values())}, indent=0, sort_keys=True) + "\n")
