"""Shards: one certkit run split over N machines, shard K of N running here, split by case and balanced by cost.

``--certkit-shard K/N`` (ini ``certkit_shard``) runs the K-th of N shards (K from 1 to N). ``auto`` takes both
from the CI system's own variables, GitLab's ``CI_NODE_INDEX`` (1-based) and ``CI_NODE_TOTAL``; ``auto/N`` takes
K from a Kubernetes Indexed Job's ``JOB_COMPLETION_INDEX`` (0-based) or from ``CI_NODE_INDEX``.

Guarantees:

* Every collected test lands in exactly one shard, and every requirement on one case in the same shard, so one
  sample stream serves them all (a case costs its most demanding requirement, as in an unsharded run).
* The split depends only on the collected suite (node ids, case ids, settings): not on collection order, on
  ``-n``, on the machine, or on which shard computes it. Every shard collects the whole suite and deselects
  after collection, so node ids, seeds and certificates are those of the unsharded run.
* Shards are balanced by planned cost: a case's cost is the samples its most demanding requirement needs when
  every sample agrees (``certkit plan``'s first figure, from the settings and any ``radius``/``edits`` test
  parameters) plus one per requirement; groups are placed largest first on the least loaded shard.
* Each shard records the digest of the whole suite and the node ids it was given, so ``certkit merge`` can
  check that the shards ran the same suite and cover it exactly once.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import math
import os
import re
from dataclasses import dataclass

import pytest

from .settings import from_cli_or_ini, resolve_settings
from .state import STATE

#: where an xdist worker hands its shard record to the controller (``config.workeroutput``), which collects nothing
WORKER_KEY = "certkit_shard"

__all__ = ["Shard", "parse_shard", "configured_shard", "group_of", "planned_cost", "assign", "split", "suite_digest", "keep_shard",
           "WORKER_KEY"]

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_AUTO_N = re.compile(r"^\s*auto\s*/\s*(\d+)\s*$")
#: the alphabet size assumed when planning a token-edit requirement at collection, before any model is loaded;
#: p* moves little with it (0.750233 at 32,000 tokens, 0.750266 at 151,000, for the README's hybrid example)
PLANNING_VOCAB = 50_000


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``total``."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def _bad(text: str, why: str) -> pytest.UsageError:
    return pytest.UsageError(f"certkit: --certkit-shard {text!r}: {why}; give K/N with 1 <= K <= N (e.g. 2/4), "
                             "auto (CI_NODE_INDEX and CI_NODE_TOTAL) or auto/N (JOB_COMPLETION_INDEX)")


def _env_int(environ, name: str, text: str) -> int | None:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return None
    if not value.strip().isdigit():
        raise _bad(text, f"{name}={value!r} is not a whole number")
    return int(value)


def parse_shard(text: str | None, environ=os.environ) -> Shard | None:
    """The shard a ``--certkit-shard`` value names (None for no value), reading CI variables for ``auto``."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    text = str(text)
    match = _SPEC.match(text)
    if match:
        index, total = int(match.group(1)), int(match.group(2))
    elif text.strip().lower() == "auto":
        index, total = _env_int(environ, "CI_NODE_INDEX", text), _env_int(environ, "CI_NODE_TOTAL", text)
        if index is None or total is None:
            raise _bad(text, "auto needs CI_NODE_INDEX and CI_NODE_TOTAL set (GitLab's parallel jobs set both); "
                       "for a Kubernetes Indexed Job use auto/N")
    elif _AUTO_N.match(text.lower()):
        total = int(_AUTO_N.match(text.lower()).group(1))
        k8s = _env_int(environ, "JOB_COMPLETION_INDEX", text)
        index = k8s + 1 if k8s is not None else _env_int(environ, "CI_NODE_INDEX", text)
        if index is None:
            raise _bad(text, "auto/N needs JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) or CI_NODE_INDEX set")
    else:
        raise _bad(text, "not a shard")
    if not 1 <= index <= total:
        raise _bad(text, f"shard {index} of {total} does not exist")
    return Shard(index, total)


def configured_shard(config: pytest.Config) -> Shard | None:
    """The shard the option or ini key names (None when the run is not sharded); ``pytest.UsageError`` for a bad one."""
    return parse_shard(from_cli_or_ini(config, "shard", str, None))


def group_of(item: pytest.Item) -> str:
    """The sample stream a test reads: its case's id where a parameter is a certkit Case (the stream is seeded by
    the run seed and the case id), else the test itself."""
    from ..cases import Case

    params = getattr(getattr(item, "callspec", None), "params", {})
    ids = sorted({value.id for value in params.values() if isinstance(value, Case)})
    return "case:" + "\x1f".join(ids) if ids else "test:" + item.nodeid


@functools.lru_cache(maxsize=1024)
def _samples_if_all_agree(sigma: float, beta: float, kernel: str, radius: float, edits: int, alpha: float, threshold: float,
                          n_max: int) -> int:
    """The samples ``certify`` needs when every one agrees; 0 where the requirement is refused before sampling."""
    from .. import bounds
    from ..requirement import Noise
    from ..sequential import MixtureTest

    noise = Noise(sigma, beta, kernel, PLANNING_VOCAB)
    text = noise.text()
    if (edits and text is None) or (radius and not sigma):
        return 0
    p_star = float(bounds.required_p_a(noise.image(), radius, text, edits, threshold))
    if not math.isfinite(p_star) or not 0.0 < p_star < 1.0:
        return 0
    first = MixtureTest(p_star, alpha, n_max).min_samples_to_certify()
    return 0 if first is None else int(first)


def planned_cost(item: pytest.Item) -> int:
    """A requirement's planned samples (see the module docstring); a test that is no requirement costs 0, and so does
    one whose settings certkit refuses (a bad marker): it fails with its own message when it runs, in its shard."""
    from ..errors import CertkitError

    if "certkit" not in getattr(item, "fixturenames", ()):
        return 0
    try:
        s = resolve_settings(item.config, item)
    except (CertkitError, pytest.UsageError):
        return 0
    params = getattr(getattr(item, "callspec", None), "params", {})
    try:
        radius, edits = float(params.get("radius", 0.0)), int(params.get("edits", 0))
    except (TypeError, ValueError):
        radius, edits = 0.0, 0
    if radius < 0 or edits < 0 or not math.isfinite(radius):
        return 0
    return _samples_if_all_agree(float(s["sigma"]), float(s["beta"]), str(s["kernel"]), radius, edits, float(s["alpha"]),
                                 float(s["threshold"]), int(s["n_max"]))


def assign(costs: dict[str, float], total: int) -> dict[str, int]:
    """Shard (1-based) for each group: largest cost first, each on the least loaded shard (ties: the lower index;
    groups of equal cost in the order of their name's SHA-256, so the result does not depend on the dict's order)."""
    order = sorted(costs, key=lambda g: (-costs[g], hashlib.sha256(g.encode()).hexdigest()))
    loads = [(0.0, k) for k in range(1, total + 1)]
    out = {}
    for group in order:
        load, shard = heapq.heappop(loads)
        out[group] = shard
        heapq.heappush(loads, (load + costs[group], shard))
    return out


def suite_digest(nodeids) -> str:
    """SHA-256 of the sorted node ids: shards that collected the same suite have the same digest."""
    return hashlib.sha256("\n".join(sorted(nodeids)).encode()).hexdigest()


def split(items: list, shard: Shard) -> tuple[list, list, dict]:
    """(kept, deselected, record) for this shard; ``record`` goes into the results document's ``run.shard``."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    costs = {g: max(planned_cost(i) for i in members) + len(members) for g, members in groups.items()}
    where = assign(costs, shard.total)
    kept = [i for i in items if where[group_of(i)] == shard.index]
    kept_ids = {i.nodeid for i in kept}
    deselected = [i for i in items if i.nodeid not in kept_ids]
    loads = [0.0] * shard.total
    for g, k in where.items():
        loads[k - 1] += costs[g]
    record = {"index": shard.index, "total": shard.total, "suite": suite_digest(i.nodeid for i in items),
              "suite_tests": len(items), "assigned": sorted(kept_ids), "planned_costs": loads}
    return kept, deselected, record


def keep_shard(config: pytest.Config, items: list, shard: Shard) -> None:
    """Deselect the other shards' tests (pytest's own deselection: counted as deselected) and record the share:
    on this process's state, and for the xdist controller in the worker's output."""
    kept, deselected, record = split(items, shard)
    record["requirements"] = sorted(i.nodeid for i in kept if "certkit" in getattr(i, "fixturenames", ()))
    elsewhere = [i.nodeid for i in deselected]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    state = config.stash[STATE]
    state.shard, state.elsewhere = record, frozenset(elsewhere)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[WORKER_KEY] = {"record": record, "elsewhere": elsewhere}
