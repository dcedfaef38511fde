"""Devices. xdist workers and GPUs (certkit/plugin/devices.py): more workers than GPUs share them round robin, and the
run says so; the GPU list is faked with --certkit-devices (on a machine with nvidia-smi, GPU 0 must be one it lists).
Where inputs reach a model (certkit/models): on its device, floating ones in its dtype; and the runtime record."""

import json

import pytest

from certkit.plugin.devices import sharing_note
from tests.test_plugin import CONFTEST  # a brightness classifier and its label oracle

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


def test_a_run_without_workers_runs_on_the_first_gpu_named(pytester, monkeypatch):
    """--certkit-devices without -n: the one process that runs every requirement is pinned like a worker."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_share=TESTS)
    res = pytester.runpytest_subprocess("--certkit-devices", "0", "-p", "no:cacheprovider", "--certkit-cache-dir", "none")
    res.assert_outcomes(passed=4)
    assert {p.read_text() for p in pytester.path.glob("pin-*.txt")} == {"0"}


@pytest.mark.parametrize("devices, workers, shared", [([], 4, False), (["0", "1"], 2, False), (["0", "1"], 1, False), (["0"], 2, True),
                                                       (["0", "1"], 3, True)])
def test_the_sharing_note_is_said_only_where_workers_share_a_gpu(devices, workers, shared):
    note = sharing_note(devices, workers)
    assert (note is not None) == shared
    if shared:
        assert f"{workers} xdist workers share {len(devices)} GPU(s)" in note


# ---------------------------------------------------------------- where inputs reach a model: device and dtype


def test_processor_outputs_go_to_the_model_device_floats_in_its_dtype_lists_too():
    import torch

    from certkit.models.base import to_device

    pixels, sizes = torch.rand(2, 3, 4, 4), torch.tensor([[4, 4], [4, 4]])
    inputs = {"pixel_values": [pixels, pixels[:1]], "image_sizes": sizes, "n": 3}
    moved = {key: to_device(value, torch.device("cpu"), torch.bfloat16) for key, value in inputs.items()}
    assert isinstance(moved["pixel_values"], list) and [t.dtype for t in moved["pixel_values"]] == [torch.bfloat16] * 2
    assert moved["image_sizes"].dtype == torch.int64 and moved["n"] == 3


def test_a_bfloat16_classifier_gets_its_images_in_bfloat16():
    """A module in bfloat16 cannot take float32 images (torch refuses the mixed convolution): the adapter casts them."""
    import numpy as np
    import torch

    from certkit import Case, Smoothed
    from certkit.models import TorchClassifier
    from certkit.noise import Gaussian
    from certkit.oracles import LabelOracle
    from certkit.testing import SmallGuard

    model = TorchClassifier(SmallGuard(vocab_size=16).to(torch.bfloat16), ["a", "b"], lambda t: [2 + len(w) % 10 for w in t.split()],
                            vocab_size=16, batch_size=32)
    assert model.dtype == torch.bfloat16 and model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    cert = Smoothed(model, LabelOracle(["a", "b"]), image=Gaussian(0.25), seed=0).frontier(
        Case("c", "pick up the cube", np.full((3, 8, 8), 0.5, dtype=np.float32)), max_edits=0, outcome="a", n=64)
    assert cert.n == 64


def test_the_runtime_record_says_how_labels_are_computed():
    """Recorded with results (not fingerprinted): device, software and the kernel flags that decide bitwise reproducibility."""
    import torch

    from certkit.models import TorchClassifier
    from certkit.testing import BrightnessClassifier

    model = TorchClassifier(BrightnessClassifier(), ["dark", "bright"], lambda t: [2], vocab_size=4)
    record = model.runtime
    assert record["device"] == str(model.device) and record["torch"] == torch.__version__
    assert record["deterministic_algorithms"] is False
    torch.use_deterministic_algorithms(True)
    try:
        assert model.runtime["deterministic_algorithms"] is True
    finally:
        torch.use_deterministic_algorithms(False)
    if model.device.type == "cuda":
        assert {"gpu", "cuda", "cudnn_deterministic", "cudnn_benchmark", "tf32_matmul"} <= set(record)
