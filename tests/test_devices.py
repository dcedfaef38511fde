"""xdist workers and GPUs (certkit/plugin/devices.py): more workers than GPUs share them round robin, and the run says
so. The GPU list is faked with --certkit-devices (on a machine with nvidia-smi, GPU 0 must be one it lists)."""

import json

import pytest

from certkit.plugin.devices import sharing_note

CONFTEST = '''
import os

import pytest
import torch

from certkit.models import TorchClassifier
from certkit.oracles import LabelOracle


class Brightness(torch.nn.Module):
    def forward(self, ids, images):
        s = images.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-s, s], 1)


@pytest.fixture(scope="session")
def certkit_model():
    return TorchClassifier(Brightness(), ["dark", "bright"], lambda t: [2 + len(w) % 8 for w in t.split()], vocab_size=10,
                           special_ids=[0, 1], batch_size=64)


@pytest.fixture(scope="session")
def certkit_oracle():
    return LabelOracle(["dark", "bright"])
'''

TESTS = '''
import os

import numpy as np
import pytest
from certkit import Case


@pytest.mark.certkit(beta=0.0, outcome="bright", n_max=300)
@pytest.mark.parametrize("i", range(4))
def test_bright(certkit, worker_id, i):
    with open(f"pin-{worker_id}-{i}.txt", "w") as f:
        f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    certkit.assert_certified(Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), 0.9, dtype=np.float32)), radius=0.05)
'''


def test_two_workers_on_one_gpu_both_run_on_it_and_the_run_says_so(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_share=TESTS)
    res = pytester.runpytest_subprocess("-n", "2", "--certkit-devices", "0", "-p", "no:cacheprovider", "--certkit-json", "r.json",
                                        "--certkit-cache-dir", "none")
    res.assert_outcomes(passed=4)
    pins = {p.name.split("-")[1] for p in pytester.path.glob("pin-*.txt")}
    assert pins == {"gw0", "gw1"}, "both workers must have run requirements"
    assert {p.read_text() for p in pytester.path.glob("pin-*.txt")} == {"0"}
    res.stdout.fnmatch_lines(["certkit: 2 xdist workers share 1 GPU(s) (0) round robin, each worker with its own copy of the model*"])
    assert res.stdout.str().count("xdist workers share") == 1
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["summary"]["requirements"] == 4


@pytest.mark.parametrize("devices, workers, shared", [([], 4, False), (["0", "1"], 2, False), (["0", "1"], 1, False), (["0"], 2, True),
                                                       (["0", "1"], 3, True)])
def test_the_sharing_note_is_said_only_where_workers_share_a_gpu(devices, workers, shared):
    note = sharing_note(devices, workers)
    assert (note is not None) == shared
    if shared:
        assert f"{workers} xdist workers share {len(devices)} GPU(s)" in note
