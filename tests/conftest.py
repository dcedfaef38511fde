"""The suite's one device switch: ``CERTKIT_TEST_DEVICE=cuda`` runs every model of the suite (the family matrix,
the pytest runs the tests start, the demo) on the GPU; the default, ``cpu``, hides every GPU from this process and
the processes it starts (``CUDA_VISIBLE_DEVICES=""``), so the suite gives the same results on a machine with one.
Set through the environment because the adapters' own default device (the first GPU if any) follows it, as do
subprocesses; a particular GPU is chosen the usual way, with CUDA_VISIBLE_DEVICES."""

import os

import pytest

# the shared fixtures: the pytester projects (project, sharded, suite) and the demo assistant served (assistant)
pytest_plugins = ["pytester", "tests.plugin.project", "tests.models.live_server"]

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


@pytest.fixture(autouse=True)
def _libraries_outlive_pytester(request):
    """A test that takes ``pytester`` drops, when it ends (and after each in-process run), every module first imported
    while it ran. Libraries that keep process-wide state must not be imported afresh, so they are imported before:

    - transformers.modeling_utils: torch registers its distributed operators once per process, and the modules that
      transformers imports when it first loads a model (torch.distributed.tensor, fsdp, symmetric memory) cannot be
      imported a second time;
    - httpcore: httpx turns httpcore's exceptions into its own through a table it fills on its first request and
      keeps; an httpcore first imported inside a pytester run is dropped after it, the next request imports a new one
      whose exception classes the table does not hold, and ``httpcore.ConnectError`` escapes every
      ``except httpx.TransportError`` (the served model's retries among them)."""
    if "pytester" in request.fixturenames:
        import httpcore  # noqa: F401
        import transformers.modeling_utils  # noqa: F401


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester, whose runs (in this process and in subprocesses) keep the written order of their tests and the
    global random state: the suite itself runs in a random order (pytest-randomly, ``make test``), but what a test
    expects of the project it runs must not depend on the suite's seed."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")
    return pytester
