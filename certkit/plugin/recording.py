"""Carrying certificates from the test that made them to the controller, and reporting errors as certkit errors.

A certificate is kept on its test item (``item.stash``) and attached to the test's report as the ``certkit``
attribute (a JSON string): pytest serialises a report's extra attributes, so it reaches the xdist controller
unchanged, and it stays out of ``user_properties``, which junitxml would write into the XML (thumbnails and all).
Under the junit families that allow test-case properties (``xunit1``, ``legacy``) a one-line summary of each
certificate is attached as the ``certkit_certificate`` property; under ``xunit2`` (pytest's default, whose
schema has no test-case properties) the certificates of failed requirements are in their failure messages and
the run's results file is named in the test-suite properties.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..certificate import CERTIFIED, ERROR, INCONCLUSIVE, NO_REQUIREMENT, NOT_CERTIFIED
from .state import RunState

_REQUIREMENT = pytest.StashKey[bool]()
_RECORDS = pytest.StashKey[dict]()  # {"certificates": [...], "cases": {hash: summary}, "sent": (n certs, n cases), "error": text}
_CRASH = re.compile(r"worker '[^']+' crashed while running")
_SOURCES_SENT = pytest.StashKey[int]()  # how many of this process's test-data records (certkit.testdata) were sent
JUNIT_PROPERTY = "certkit_certificate"
_PROPERTY_FAMILIES = ("xunit1", "legacy")


def tag_requirements(items) -> int:
    """Mark the tests that use the ``certkit`` fixture (certkit requirements); return how many there are."""
    count = 0
    for item in items:
        if "certkit" in getattr(item, "fixturenames", ()):
            item.stash[_REQUIREMENT] = True
            count += 1
    return count


def is_requirement(item: pytest.Item) -> bool:
    """Whether ``item`` was tagged a certkit requirement at collection."""
    return item.stash.get(_REQUIREMENT, False)


def _records(item: pytest.Item) -> dict:
    return item.stash.setdefault(_RECORDS, {"certificates": [], "cases": {}, "sent": (0, 0)})


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """This run's test data starts here, before any conftest is imported: a source another pytest run in this process
    read (pytester's in-process runs) is not this run's."""
    from ..testdata import mark

    early_config.stash[_SOURCES_SENT] = mark()


def _new_sources(config: pytest.Config) -> list[dict]:
    """The test-data sources this process read since its last report (paths relative to the rootdir where below it),
    for the controller's ``test_data``: test modules are imported on the xdist workers, so the records travel with the
    reports."""
    from ..testdata import read_since

    sent = config.stash.get(_SOURCES_SENT, 0)
    new = read_since(sent)
    config.stash[_SOURCES_SENT] = sent + len(new)
    for source in new:
        if source["path"] is not None:
            try:
                source["path"] = Path(source["path"]).relative_to(config.rootpath).as_posix()
            except ValueError:
                pass
    return new


def record_certificate(item: pytest.Item, certificate: dict, case_hash: str, case_summary) -> None:
    """Keep a certificate (and, once per case, ``case_summary()``) on the item until its next report."""
    records = _records(item)
    records["certificates"].append(certificate)
    if case_hash not in records["cases"]:
        records["cases"][case_hash] = case_summary()


def certificate_line(c: dict) -> str:
    """One line per certificate, for the junit property: status, requirement, p_A bounds, n."""
    where = f"{c['edits']} edit(s), radius {c['radius']}" if c.get("mode") != "frontier" else "frontier " + str(c.get("frontier"))
    return (f"{c['status']}: case {c['case_id']!r}, outcome {c['outcome']!r} at {where}; p_A in [{c['p_a_lower']:.6f}, "
            f"{c['p_a_upper']:.6f}] at confidence {1 - c['alpha']:g}, needs >= {c['p_star']}; n = {c['n']}")


def error_text(exc: BaseException) -> str:
    """A requirement's error as the results keep it: a certkit error's own message (it names the field and the fix),
    any other exception with its type."""
    from ..errors import CertkitError

    return (str(exc) if isinstance(exc, CertkitError) else f"{type(exc).__name__}: {exc}")[:2000]


def record_error(item: pytest.Item, exc: BaseException) -> None:
    """Keep the first error raised while evaluating a requirement on its item: it is the requirement's error even
    when the test catches it."""
    records = _records(item)
    if records.get("error") is None:
        records["error"] = error_text(exc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Attach the certificates made since the last report, and make a requirement that could not be evaluated a
    failed test.

    An error is an exception other than an assertion (or a pytest outcome such as ``pytest.fail``) raised in the
    requirement, or one that certify or frontier raised and the test caught. Whatever the test or its markers made of
    it (passed, skipped, xfailed), the report is failed and says the error: the terminal, JUnit and the gate agree.
    A :class:`~certkit.errors.CertkitError` (a case, model output, oracle or requirement certkit refuses) is shown
    by its message alone, no traceback."""
    from ..errors import CertkitError

    report = yield
    if not is_requirement(item):
        return report
    records = _records(item)
    error = records.pop("error", None)
    exc = call.excinfo.value if call.excinfo is not None else None
    raised = isinstance(exc, Exception) and not isinstance(exc, AssertionError)
    if raised:
        error = error or error_text(exc)
    if error is not None:
        xfailed = hasattr(report, "wasxfail")
        if not raised or isinstance(exc, CertkitError):  # any other exception keeps its traceback
            why = (" (the test caught it; an error fails its requirement whatever the test does with it)" if not raised else
                   " (an error fails its requirement, xfail or not)" if xfailed else "")
            report.longrepr = f"ERROR: certkit could not evaluate {item.nodeid}: {error}{why}"
        report.outcome = "failed"
        if xfailed:
            del report.wasxfail
    sent_certs, sent_cases = records["sent"]
    certificates = records["certificates"][sent_certs:]
    cases = list(records["cases"].values())[sent_cases:]
    records["sent"] = (len(records["certificates"]), len(records["cases"]))
    report.certkit = json.dumps({"certificates": certificates, "cases": cases, "error": error, "sources": _new_sources(item.config)})
    config = item.config
    # junitxml writes the properties of the teardown report
    if report.when == "teardown" and getattr(config.option, "xmlpath", None) and config.getini("junit_family") in _PROPERTY_FAMILIES:
        report.user_properties.extend((JUNIT_PROPERTY, certificate_line(c)) for c in records["certificates"])
    return report


def _certkit_error_names() -> set[str]:
    """Qualified names of CertkitError and every subclass loaded so far (an error raised was loaded)."""
    from ..errors import CertkitError

    names, todo = set(), [CertkitError]
    while todo:
        cls = todo.pop()
        names.add(f"{cls.__module__}.{cls.__qualname__}")
        todo += cls.__subclasses__()
    return names


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A case file that ``load_cases`` refuses while a test module is imported stops the collection with the
    message (file, line, field and fix) alone, not the import traceback. The collect report keeps only the
    exception's text, whose prefix is its qualified class name."""
    report = yield
    message = getattr(getattr(report.longrepr, "reprcrash", None), "message", "") if report.failed else ""
    cls, _, text = message.partition(": ")
    if text and cls in _certkit_error_names():
        report.longrepr = f"ERROR: certkit could not collect {collector.nodeid}: {text}"
    return report


def collect(state: RunState, report: pytest.TestReport) -> None:
    """On the controller: fold one test report into the run's results."""
    payload = getattr(report, "certkit", None)
    # xdist reports a test whose worker died with when="???" and this message (and no certkit payload)
    crashed = report.failed and report.when == "???" and bool(_CRASH.match(str(report.longrepr or "")))
    if payload is None and not crashed:
        return
    data = json.loads(payload) if payload else {"certificates": [], "cases": [], "error": None}
    for case in data["cases"]:
        state.cases.setdefault(case["hash"], case)
    for source in data.get("sources", ()):
        state.sources.setdefault((source["path"], source["sha256"], source["format"]), source)
    certs = data["certificates"]
    record = state.results.get(report.nodeid)
    if report.when in ("call", "???") or (report.when == "setup" and report.outcome != "passed") or certs:
        if record is None:
            record = state.results[report.nodeid] = {"nodeid": report.nodeid, "certificates": [], "test_outcome": None, "error": None}
        record["certificates"].extend(certs)
        if report.when == "call" or report.outcome != "passed":
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            if crashed:
                record["error"] = "the worker running this requirement crashed: " + _short_longrepr(report)
            record["test_outcome"] = outcome
            record["duration_s"] = round(report.duration, 4)
            if report.outcome == "failed" and not any(c["status"] != CERTIFIED for c in record["certificates"]):
                record["error"] = _short_longrepr(report)
            if report.when == "setup":
                record["error"] = _short_longrepr(report)
        if data["error"]:
            record["error"] = data["error"]


def _short_longrepr(report) -> str:
    text = str(report.longrepr) if report.longrepr is not None else ""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-6:])[:2000]


def status(record: dict) -> str:
    """A requirement's status in the results: error where one was recorded or the test failed without a certificate;
    else the worst of its certificates' statuses (not certified, then inconclusive, then certified); no requirement
    for a test that made no certificate and did not fail."""
    certs = record["certificates"]
    if record.get("error") or (record["test_outcome"] == "failed" and not certs):
        return ERROR
    if not certs:
        return NO_REQUIREMENT
    statuses = [c["status"] for c in certs]
    for name in (NOT_CERTIFIED, INCONCLUSIVE):
        if name in statuses:
            return name
    return CERTIFIED
