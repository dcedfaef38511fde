"""The suite's one device switch: ``CERTKIT_TEST_DEVICE=cuda`` runs every model of the suite (the family matrix,
the pytest runs the tests start, the demo) on the GPU; the default, ``cpu``, hides every GPU from this process and
the processes it starts (``CUDA_VISIBLE_DEVICES=""``), so the suite gives the same results on a machine with one.
Set through the environment because the adapters' own default device (the first GPU if any) follows it, as do
subprocesses; a particular GPU is chosen the usual way, with CUDA_VISIBLE_DEVICES."""

import os

import pytest

pytest_plugins = ["pytester"]

DEVICES = ("cpu", "cuda")
DEVICE = os.environ.get("CERTKIT_TEST_DEVICE", "cpu").strip().lower() or "cpu"
if DEVICE == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA


def pytest_configure(config):
    if DEVICE not in DEVICES:
        raise pytest.UsageError(f"CERTKIT_TEST_DEVICE must be one of {', '.join(DEVICES)}, got {DEVICE!r}; "
                                "choose a particular GPU with CUDA_VISIBLE_DEVICES")
    if DEVICE == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(f"CERTKIT_TEST_DEVICE=cuda, but torch {torch.__version__} sees no CUDA GPU "
                                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}); "
                                    "unset it to run the suite on the CPU")


def pytest_report_header(config):
    return f"certkit test device: {DEVICE} (CERTKIT_TEST_DEVICE)"
