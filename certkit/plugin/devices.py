"""Where certkit requirements run: one xdist worker per GPU, and a fair share of the cores for CPU workers.

Nothing here touches a pytest run that is not a certkit run: nvidia-smi is asked only when a configured certkit
run starts xdist workers, ``-n auto`` counts GPUs only in such a run, and CPU threads are shared only on workers
that collected certkit requirements.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .settings import from_cli_or_ini, uses_certkit
from .state import STATE


def _nvidia_smi(query: str) -> list[str] | None:
    """``nvidia-smi --query-gpu=QUERY`` lines, or None where nvidia-smi is absent or fails."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else None


def env_devices() -> list[str]:
    """The GPU ids CUDA_VISIBLE_DEVICES names (empty when it is unset or hides every GPU)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"] if env is not None else []


def visible_devices(config: pytest.Config) -> list[str]:
    """The GPUs workers are pinned to: --certkit-devices (checked against nvidia-smi where it answers), else
    CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists."""
    option = from_cli_or_ini(config, "devices", str, None)
    if option:
        wanted = [d.strip() for d in option.split(",") if d.strip()]
        present = _nvidia_smi("index,uuid")
        if present is not None:  # where nvidia-smi answers, every id must name one of its GPUs (index or UUID)
            known = {part.strip() for line in present for part in line.split(",")}
            missing = [d for d in wanted if d not in known]
            if missing:
                listed = ", ".join(line.split(",")[0].strip() for line in present) or "none"
                raise pytest.UsageError(f"certkit: option --certkit-devices names GPU(s) {missing} that nvidia-smi does not list "
                                        f"(it lists: {listed}); pass ids it lists")
        return wanted
    env = env_devices()
    if env or os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return env
    return _nvidia_smi("index") or []


def controller_devices(config: pytest.Config) -> list[str]:
    """The device list the controller hands to workers; nvidia-smi is asked only in a certkit run with workers or
    --certkit-devices. With --certkit-devices and no workers, this process runs every requirement: it is pinned to
    the first GPU named (before any CUDA call), as a worker would be."""
    workers = bool(getattr(config.option, "numprocesses", None))
    named = config.getoption("certkit_devices") is not None
    if not ((workers or named) and uses_certkit(config)):
        return env_devices()
    devices = visible_devices(config)
    if named and not workers and devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[0]
        return devices[:1]
    return devices


def pin_worker(workerinput: dict) -> list[str]:
    """On an xdist worker, before any CUDA call: pin it to one GPU of the controller's list (round robin: with more
    workers than GPUs, worker k shares GPU k mod the GPU count, each worker with its own copy of the model)."""
    devices = workerinput.get("certkit_devices") or []
    if not devices:
        return []
    index = int(str(workerinput.get("workerid", "gw0")).lstrip("gw") or 0)
    os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    return [os.environ["CUDA_VISIBLE_DEVICES"]]


def share_cores(workers: int) -> int:
    """A CPU worker's share of the cores this process may run on (at least one thread): torch's default of one
    thread per core in every worker oversubscribes the machine (2 workers on 2 cores ran 15x slower). Set for
    torch now if it is loaded, and through OMP_NUM_THREADS for a torch loaded later."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def share_cores_on_worker(config: pytest.Config, certkit_run: bool) -> None:
    """On a CPU xdist worker of a certkit run (configured for certkit, or one that collected requirements), unless
    the user set OMP_NUM_THREADS (or it was shared already)."""
    workerinput = getattr(config, "workerinput", None)
    if certkit_run and workerinput is not None and not workerinput.get("certkit_devices") and "OMP_NUM_THREADS" not in os.environ:
        share_cores(int(workerinput.get("workercount", 1)))


def sharing_note(devices: list[str], workers: int) -> str | None:
    """What the run says where more xdist workers than GPUs share them (None where each has its own)."""
    if not devices or workers <= len(devices):
        return None
    return (f"certkit: {workers} xdist workers share {len(devices)} GPU(s) ({', '.join(devices)}) round robin, each worker with its "
            "own copy of the model in GPU memory; -n auto starts one worker per GPU")


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run with xdist absent or disabled (-p no:xdist) has no such hook
def pytest_configure_node(node) -> None:
    """xdist (controller): hand the run seed and the device list to each worker; say once where workers share GPUs."""
    state = node.config.stash[STATE]
    node.workerinput["certkit_seed"] = state.seed
    node.workerinput["certkit_devices"] = state.devices
    note = sharing_note(state.devices, int(node.workerinput.get("workercount", 1)))
    reporter = node.config.pluginmanager.get_plugin("terminalreporter")
    if note and reporter is not None and node.workerinput.get("workerid") == f"gw{len(state.devices)}":  # the first that shares
        reporter.write_line(note)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config):
    """``-n auto`` in a certkit run: one worker per visible GPU; xdist's default (CPU count) when there is none, and
    in any run that is not configured for certkit."""
    if not uses_certkit(config):
        return None
    devices = visible_devices(config)
    return len(devices) if devices else None
