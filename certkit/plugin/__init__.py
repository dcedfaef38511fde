"""The certkit pytest plugin: certification requirements as pytest tests.

Users define two session-scoped fixtures in their ``conftest.py``: ``certkit_model`` (a certkit model adapter)
and ``certkit_oracle`` (an oracle). Tests take the function-scoped ``certkit`` fixture and call
``certkit.assert_certified(case, edits=..., radius=..., outcome=...)``.

One concern per module, wired together here (the entry point pytest loads):

* :mod:`.settings`: options, ini keys, the ``certkit`` marker, path anchoring;
* :mod:`.devices`: one xdist worker per GPU, CPU threads per worker;
* :mod:`.fixtures`: the ``certkit`` fixture and the failure message;
* :mod:`.recording`: certificates from the test to the controller, certkit errors as short failures;
* :mod:`.results`: summary, gate, baseline, history and the files written;
* :mod:`.sharding`: ``--certkit-shard K/N``, this run's share of a suite split over machines;
* :mod:`.labelling`: ``--certkit-label-sample N``, a sample of the run's noisy answers for people to label;
* :mod:`.progress`: requirements done / total, samples per second and an ETA as the run goes;
* :mod:`.controller`: the controller's plugin object, the terminal summary and the JUnit gate.

A pytest run of a project that does not use certkit is left as it is: certkit adds its options, its marker and
its fixtures, and nothing else happens unless the run is configured for certkit (a ``--certkit-*`` option or a
``certkit_*`` ini key) or collects a test that uses the ``certkit`` fixture. This module imports no model code.
"""

from __future__ import annotations

import pytest

from .controller import Controller, settings_line, shows_header
from .devices import controller_devices, pin_worker, pytest_configure_node, pytest_xdist_auto_num_workers, share_cores_on_worker
from .fixtures import CertkitRequirement, _certkit_smoothed_cache, case_summary, certkit, certkit_model, certkit_oracle, failure_message
from .labelling import register as register_labelling
from .progress import register as register_progress
from .recording import (
    is_requirement,
    pytest_load_initial_conftests,
    pytest_make_collect_report,
    pytest_runtest_makereport,
    tag_requirements,
)
from .settings import SETTINGS, as_given, from_cli_or_ini, path_setting, pytest_addoption, resolve_settings, run_settings, uses_certkit
from .sharding import configured_shard, keep_shard
from .state import STATE, RunState

__all__ = [
    "CertkitRequirement", "RunState", "SETTINGS", "case_summary", "failure_message", "resolve_settings",
    # hooks and fixtures pytest finds on this module
    "certkit", "certkit_model", "certkit_oracle", "_certkit_smoothed_cache", "pytest_addoption", "pytest_configure",
    "pytest_collection_modifyitems", "pytest_configure_node", "pytest_make_collect_report", "pytest_report_collectionfinish",
    "pytest_load_initial_conftests", "pytest_report_header",
    "pytest_runtest_makereport", "pytest_xdist_auto_num_workers",
]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the ``certkit`` marker and this process's :class:`RunState` (``config.stash[STATE]``); on the
    controller also the :class:`Controller`, after checking the baseline, history, options and shard (a bad one is a
    ``pytest.UsageError`` before any test runs); on an xdist worker, pin its GPU and share the cores; on every process,
    the progress view's parts (:func:`.progress.register`)."""
    config.addinivalue_line("markers", "certkit(**settings): certkit settings (sigma, beta, kernel, alpha, threshold, n_max, outcome)")
    state = RunState()
    state.cache_dir = path_setting(config, "cache_dir")
    state.json_path = path_setting(config, "json")
    state.report_path = path_setting(config, "report")
    state.min_pass_rate = from_cli_or_ini(config, "min_pass_rate", float, None)
    state.allow_inconclusive = from_cli_or_ini(config, "allow_inconclusive", bool, False)
    state.allow_removed = from_cli_or_ini(config, "allow_removed", bool, False)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        state.seed = int(workerinput.get("certkit_seed", 0))
        state.devices = pin_worker(workerinput)
        share_cores_on_worker(config, uses_certkit(config))
    else:
        _configure_controller(config, state)
        config.pluginmanager.register(Controller(state), "certkit-controller")
    register_progress(config)
    config.stash[STATE] = state
    register_labelling(config)  # --certkit-label-sample: on every process, each keeps a sample of the answers it draws


def _configure_controller(config: pytest.Config, state: RunState) -> None:
    from ..results import ResultsError, load_results, read_history

    state.seed = from_cli_or_ini(config, "seed", int, 0)
    state.devices = controller_devices(config)
    state.history_path = path_setting(config, "history")
    state.baseline_path = path_setting(config, "baseline")
    state.update_baseline = from_cli_or_ini(config, "update_baseline", bool, False)
    if state.update_baseline and not state.baseline_path:
        raise pytest.UsageError("certkit: --certkit-update-baseline needs --certkit-baseline FILE (where to write it)")
    if state.baseline_path and not state.update_baseline:
        try:
            state.baseline = load_results(as_given(state.baseline_path, config), "baseline")
        except ResultsError as exc:
            raise pytest.UsageError(f"certkit: {exc}; create it with --certkit-update-baseline") from None
    if state.history_path:
        try:
            read_history(as_given(state.history_path, config))
        except ResultsError as exc:
            raise pytest.UsageError(f"certkit: {exc}; or pass --certkit-history none") from None
    run_settings(config)  # fail fast on bad options and ini values
    configured_shard(config)


@pytest.hookimpl(tryfirst=True)  # the shard is split from the whole collection, before -k, -m or a reordering plugin
def pytest_collection_modifyitems(config: pytest.Config, items) -> None:
    """Keep this shard's share of a sharded run; tag the certkit requirements; a CPU worker that collected some shares
    the cores with the other workers."""
    shard = configured_shard(config)
    if shard is not None:
        keep_shard(config, items, shard)
    requirements = tag_requirements(items)
    share_cores_on_worker(config, requirements > 0)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One line with the run's certkit settings, in a run configured for certkit (pytest calls this before it
    collects, and only when it shows its header)."""
    if not uses_certkit(config):
        return None
    state = config.stash[STATE]
    state.settings_shown = True
    return [settings_line(config, state)]


def pytest_report_collectionfinish(config: pytest.Config, items) -> list[str] | None:
    """The settings line for a run that only the ``certkit`` fixture makes a certkit run: known once it is collected
    (under xdist the controller collects nothing, and the certkit section at the end says it)."""
    state = config.stash[STATE]
    if state.settings_shown or not shows_header(config) or not any(is_requirement(item) for item in items):
        return None
    state.settings_shown = True
    return [settings_line(config, state)]
