"""The demo assistant behind a real ``transformers serve``, for the served-model tests (tests/models/test_served.py)
and the sharded audit through two servers (tests/plugin/test_sharding_served.py): its folder and served id, the
``assistant`` fixture (the model in process), its word alphabet, and a server started on a loopback port.
tests/conftest.py registers this module as a plugin, so every test takes ``assistant`` by name."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from certkit import demo

ASSISTANT = str((Path(demo.__file__).parent / "weights" / "assistant").resolve())
#: the demo assistant's served id: ``transformers serve`` names a local model by its folder
SERVED_ID = "certkit/demo/weights/assistant"


@pytest.fixture(scope="module")
def assistant():
    return demo.load_assistant(batch_size=64)


def _words(adapter) -> list[str]:
    """The demo assistant's word-level tokenizer, as a word alphabet in token-id order: word noise through the
    chat protocol then draws exactly the samples token noise draws in-process."""
    return [adapter.tokenizer.convert_ids_to_tokens(i) for i in adapter.alphabet.tolist()]


def _model_id(url, model):
    """transformers serve lists a local model by its absolute path: ask the server when the id is the demo's."""
    if model != SERVED_ID:
        return model
    listed = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
    return next((m["id"] for m in listed if m["id"].endswith(SERVED_ID)), model)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _transformers_serve(folder: str | Path, port: int | None = None):
    """A real ``transformers serve`` of the model in ``folder`` on a loopback port; yields its URL."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("the `transformers` command is missing; install certkit's test extra (transformers[serving])")
    port = port or _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # the server's log goes to a file, not a pipe: a pipe nobody reads fills after ~900 logged requests and hangs the server
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", str(folder)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(Path(ASSISTANT).parents[3]))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # two servers starting side by side on 2 loaded cores took over 120 s
    try:
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                out = log.read().decode(errors="replace")[-2000:] if proc.poll() is not None else "(still starting)"
                pytest.fail(f"transformers serve did not start: {out}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
