"""The pytester projects the plugin tests run, and their helpers, shared by the tests under tests/plugin/ and the
top-level tests that run pytest sessions (results, regression, faults, gate, bad inputs).

``CONFTEST`` is a project's conftest: a brightness classifier (``bright`` iff the mean pixel exceeds 0.5) and its
label oracle. The suites run against it: ``TESTS`` (four cases at two radii), ``SUITE`` (the sharded suite: twelve
cases, frontiers and a plain test) and ``REGRESSION_TESTS`` (a model made darker through ``BRIGHT_SHIFT``). The
fixtures ``project``, ``sharded`` and ``suite`` build them (tests/conftest.py registers this module as a plugin, so
every test takes them by name); ``make_project`` builds a project around other tests. ``_results`` reads a run's
results file, ``_run`` runs ``SUITE`` (a shard of it, given ``--certkit-shard``) without cache, report or history,
``_certificates`` keeps what two runs of the same requirements must agree on, and ``QUICK`` holds the options of a run
in this process.
"""

import json

import pytest

CONFTEST = '''
import numpy as np
import pytest
import torch
from certkit.models import TorchClassifier
from certkit.oracles import LabelOracle


class Bright(torch.nn.Module):
    def forward(self, ids, images):
        s = images.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-s, s], 1)


@pytest.fixture(scope="session")
def certkit_model():
    return TorchClassifier(Bright(), ["dark", "bright"], lambda t: [2 + len(w) % 20 for w in t.split()],
                           vocab_size=24, special_ids=[0, 1], mask_id=0, batch_size=64)


@pytest.fixture(scope="session")
def certkit_oracle():
    return LabelOracle(["dark", "bright"])
'''


TESTS = '''
import numpy as np
import pytest
from certkit import Case

CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), v, dtype=np.float32)) for i, v in enumerate([0.9, 0.8, 0.62, 0.51])]


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("radius", [0.05, 0.2])
def test_bright(certkit, case, radius):
    certkit.assert_certified(case, radius=radius)
'''


# pytester runs in this process (runpytest_inprocess) without what a run that checks the gate does not need: the HTML
# report, the history, pytest's cache, its garbage collection for unraisable exceptions (this process's whole heap,
# torch's included, per run) and hypothesis's plugin (which imports and assertion-rewrites all of hypothesis again
# in every run)
QUICK = ("-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:hypothesispytest", "-ra")


def _results(pytester, name="results.json"):
    return json.loads((pytester.path / name).read_text())


def make_project(pytester, tests: str):
    """A pytester project with the brightness conftest and ``tests`` as test_audit.py."""
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n")
    pytester.makepyfile(test_audit=tests)
    return pytester


@pytest.fixture
def project(pytester):
    return make_project(pytester, TESTS)


# ------------------------------------------------------------------ the sharded suite: shards through pytest, and their merge


SUITE = '''
import numpy as np
import pytest
from certkit import Case

CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), 0.5 + i / 100, dtype=np.float32)) for i in range(12)]


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("radius", [0.05, 0.2, 0.4])
def test_bright(certkit, case, radius):
    certkit.assert_certified(case, radius=radius)


@pytest.mark.parametrize("case", CASES[:5], ids=str)
def test_frontier(certkit, case):
    certkit.frontier(case, outcome="bright", n=500)


def test_plain():
    pass
'''


KEEP = ("case_id", "status", "n", "successes", "p_a_lower", "p_a_upper", "p_adv", "seed", "radius", "edits", "label_counts", "frontier")


def _certificates(doc: dict) -> dict:
    return {r["nodeid"]: (r["status"], [{k: c.get(k) for k in KEEP} for c in r["certificates"]]) for r in doc["results"]}


@pytest.fixture
def sharded(pytester):
    return make_project(pytester, SUITE)


def _run(project, *args):
    return project.runpytest_subprocess("-p", "no:cacheprovider", "--certkit-cache-dir", "none", "--certkit-report", "none",
                                        "--certkit-history", "none", "--certkit-n-max", "2000", *args)


# ------------------------------------------------------------------ the regression suite: baselines, history and merges


# the model's brightness threshold comes from an environment variable, so a test can make it worse
REGRESSION_TESTS = '''
import os
import numpy as np
import pytest
from certkit import Case

SHIFT = float(os.environ.get("BRIGHT_SHIFT", "0"))
CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), v - SHIFT, dtype=np.float32)) for i, v in enumerate([0.9, 0.7, 0.6])]

@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bright(certkit, case):
    certkit.assert_certified(case, radius=0.1, n_max=2000)
'''


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=REGRESSION_TESTS)
    return pytester
