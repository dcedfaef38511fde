"""A served model's behavioural identity: the canary.

certkit cannot hash remote weights, and a server restarted on the same folder with other weights reports the same
path, revision and version. So every served model also has a *behavioural* identity, the canary: one fixed
request (``CANARY_PROMPT`` with :func:`canary_image`, token ids from the local processor for token-in), answered
greedily (temperature 0, ``CANARY_TOKENS`` tokens) with its top-``CANARY_TOP`` token logprobs. Its hash
(:func:`canary_hash`: the answer, and the logprobs rounded to 2 decimals) is part of the fingerprint, so other
weights that change the canary's answer get another fingerprint, and the count cache does not serve the old
model's counts for them; it is recorded in ``served.server["canary"]``. The fingerprint also covers the
``revision`` you declare (a weights hash, commit or tag), the model id, the server's version and
``system_fingerprint``, the protocol, encoding and sampling settings. Mid-run: after every batch during which the
endpoint retried a request or opened a new connection (a restarted server drops its connections;
:attr:`certkit.models.http.Endpoint.epoch`), the canary is asked again before the batch's answers are accepted;
an answer from another model (:func:`same_canary`: another greedy answer, or a logprob off by more than 0.05 nats)
stops the run with a :class:`~certkit.models.ModelError` naming both canary hashes and both fingerprints, none of
that batch's answers used, and the adapter refuses every later batch. So no certificate mixes two models. The
answering ``model`` and ``system_fingerprint`` are checked on every answer as well.

What the canary cannot see: a change that leaves the canary's answer as it was (its greedy tokens and, with
logprobs, every top-k logprob the same to 2 decimals for the fingerprint, within 0.05 nats mid-run), e.g. a
fine-tune that only alters answers far from the canary's input. Servers that return no logprobs (``transformers
serve``) give the greedy answer alone, which many changes keep (the demo assistant with every weight moved by
seeded noise of half its spread answers the canary as before, so it keeps its fingerprint):
``server["canary"]["evidence"]`` says so. Declare ``revision`` as a weights hash to cover those. A model switched
behind a proxy or load balancer that keeps the client's connection open (no retry, no reconnect) is not re-checked
until the next reconnect. On a server whose logprobs jitter between runs by more than the rounding (not
batch-invariant, low precision), a restart may give a fresh fingerprint: the cache is then not reused (samples are
drawn again), which costs time, never soundness.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["CANARY_PROMPT", "canary_image", "canary_hash", "same_canary"]

#: the canary: one fixed request (this prompt, :func:`canary_image`), answered greedily with its top-k logprobs
CANARY_PROMPT = "Describe this image."
CANARY_TOKENS = 8
CANARY_TOP = 5
CANARY_DECIMALS = 2  # logprobs enter the hash rounded to 2 decimals (nats): a deterministic server repeats them exactly
#: nats a re-check's logprobs may differ by (5% in probability): vLLM's CPU build (fp32) repeats them bit for bit,
#: with other requests in flight too; the margin is for low-precision kernels whose sums depend on the batch
CANARY_TOLERANCE = 0.05


def canary_image() -> np.ndarray:
    """The canary's image: a fixed 32x32 RGB pattern drawn from a seeded generator (the same on every machine)."""
    return np.random.default_rng(20261204).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def canary_hash(record: dict) -> str:
    """SHA-256 of a canary answer: its greedy answer and, where the server gave them, every position's chosen token,
    its logprob and its top-k (token, logprob) pairs, sorted by token so that a near tie's order does not matter,
    logprobs rounded to ``CANARY_DECIMALS`` decimals."""
    def r(x):
        return round(float(x), CANARY_DECIMALS) + 0.0  # + 0.0: -0.0 and 0.0 hash alike

    positions = None if record["logprobs"] is None else [
        [tok, r(lp), sorted([t, r(v)] for t, v in top)] for tok, lp, top in record["logprobs"]]
    return hashlib.sha256(json.dumps({"answer": record["answer"], "logprobs": positions}, sort_keys=True).encode()).hexdigest()


def same_canary(a: dict, b: dict, tolerance: float = CANARY_TOLERANCE) -> bool:
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
