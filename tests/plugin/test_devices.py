"""Devices (certkit/plugin/devices.py): xdist workers and GPUs. Each worker is pinned to one GPU; more workers than
GPUs share them round robin, and the run says so; the GPU list is faked with --certkit-devices or a fake nvidia-smi
(on a machine with nvidia-smi, GPU 0 must be one it lists). CPU workers share the cores; a project that does not use
certkit keeps its threads, its worker count and its plain runs."""

import json
import os

import pytest

from certkit.plugin.devices import sharing_note
from tests.plugin.project import CONFTEST  # a brightness classifier and its label oracle

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


PINNING = '''
import os
import pytest

@pytest.mark.parametrize("i", range(4))
def test_pin(i, worker_id):
    with open(f"pin-{worker_id}-{i}.txt", "w") as f:
        f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
'''


def _pins(pytester):
    return {p.name.split("-")[1]: p.read_text() for p in pytester.path.glob("pin-*.txt")}


def test_each_xdist_worker_is_pinned_to_one_gpu(pytester, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makepyfile(test_pin=PINNING)
    pytester.runpytest_subprocess("-n", "2", "--certkit-devices", "3,5").assert_outcomes(passed=4)
    assert _pins(pytester) == {"gw0": "3", "gw1": "5"}


def test_pinning_honours_the_callers_device_list_and_auto(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    pytester.makepyfile(test_pin=PINNING)
    res = pytester.runpytest_subprocess("-n", "auto")  # one worker per visible GPU
    res.assert_outcomes(passed=4)
    res.stdout.fnmatch_lines(["*2 workers*"])
    assert _pins(pytester) == {"gw0": "4", "gw1": "7"}


def test_no_gpu_means_cpu_workers_unpinned(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    pytester.makepyfile(test_pin=PINNING)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=4)
    assert set(_pins(pytester).values()) == {""}


def test_a_run_without_xdist_is_left_alone(pytester):
    """Installed in an environment, the plugin must not break a project's run with xdist disabled."""
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    res = pytester.runpytest_subprocess("-p", "no:xdist")
    assert res.ret == pytest.ExitCode.OK and "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
    res.assert_outcomes(passed=1)


def test_nvidia_smi_is_not_asked_on_a_run_without_workers(pytester, monkeypatch):
    called = _fake_nvidia_smi(pytester, monkeypatch)
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert not called.exists()


THREADS = '''
import os
import pytest
import torch

@pytest.mark.parametrize("i", range(4))
def test_threads(i, worker_id):
    with open(f"threads-{worker_id}-{i}.txt", "w") as f:
        f.write(f"{torch.get_num_threads()} {os.environ.get('OMP_NUM_THREADS', 'unset')}")
'''


@pytest.mark.parametrize("user_threads", [None, "1"])
def test_cpu_workers_share_the_cores_unless_the_user_chose(pytester, monkeypatch, user_threads):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    if user_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", user_threads)
    pytester.makeini("[pytest]\ncertkit_seed = 0\n")  # a certkit run by configuration
    pytester.makepyfile(test_threads=THREADS)
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=4)
    seen = {p.read_text() for p in pytester.path.glob("threads-*.txt")}
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert seen == ({f"{share} {share}"} if user_threads is None else {f"1 {user_threads}"})


def _fake_nvidia_smi(pytester, monkeypatch):
    """An nvidia-smi on PATH that lists one GPU and leaves a file behind when it is asked."""
    fake = pytester.path / "bin"
    fake.mkdir()
    called = pytester.path / "called"
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\ntouch {called}\necho 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return called


def test_a_project_without_certkit_keeps_its_threads_and_its_worker_count(pytester, monkeypatch):
    """Installed but unused, certkit changes nothing: no thread share, no nvidia-smi, -n auto as xdist decides."""
    called = _fake_nvidia_smi(pytester, monkeypatch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pytester.makepyfile(test_threads=THREADS)
    res = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=4)
    assert not called.exists()
    assert {p.read_text().split()[1] for p in pytester.path.glob("threads-*.txt")} == {"unset"}
    assert not (pytester.path / "reports").exists()
    assert "certkit:" not in res.stdout.str()  # no report header line either


def test_a_certkit_run_counts_gpus_for_n_auto_and_says_its_settings(pytester, monkeypatch):
    called = _fake_nvidia_smi(pytester, monkeypatch)
    pytester.makeini("[pytest]\ncertkit_seed = 0\n")
    pytester.makepyfile(test_plain="def test_a():\n    assert True\n")
    res = pytester.runpytest_subprocess("-n", "auto", "-p", "no:cacheprovider")
    assert called.exists()
    res.stdout.fnmatch_lines(["certkit: seed 0, sigma 0.25, * gate: every requirement certified; results reports/results.json",
                              "*created: 1/1 worker*"])
