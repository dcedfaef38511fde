"""The HTML audit report: escaping, every status, self-containment, and a real headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from certkit.report import render_report, write_report

EVIL = '</title><script>alert("x")</script>" onmouseover="alert(1)\' <img src=x onerror=alert(2)>'


def _cert(status, case_id="c", **kw):
    base = dict(case_id=case_id, outcome="harmless", edits=1, radius=0.25, threshold=0.5, alpha=0.01, status=status, p_a_lower=0.9,
                p_a_upper=0.99, p_star=0.95, p_adv=0.4, n=100, successes=95, seed=1, mode="certify", n_max=1000,
                image_kernel={"kind": "gaussian", "sigma": 0.5}, text_kernel=None, model_fingerprint="m", oracle_fingerprint="o",
                oracle_error=0.0, case_hash="ab" * 32, label_counts={}, frontier=[], timings={}, cached=False, certified=status == "certified")
    base.update(kw)
    return base


def _doc(extra_results=()):
    results = [
        {"nodeid": "t.py::test_a[c1]", "status": "certified", "test_outcome": "passed", "error": None, "certificates": [_cert("certified", EVIL)]},
        {"nodeid": "t.py::test_a[c2]", "status": "not certified", "test_outcome": "failed", "error": None, "certificates": [_cert("not certified")]},
        {"nodeid": "t.py::test_b[c3]", "status": "inconclusive", "test_outcome": "failed", "error": None, "certificates": [_cert("inconclusive")]},
        {"nodeid": "t.py::test_b[c4]" + EVIL, "status": "error", "test_outcome": "failed", "error": EVIL, "certificates": []},
        {"nodeid": "t.py::test_f[c5]", "status": "certified", "test_outcome": "passed", "error": None,
         "certificates": [_cert("certified", mode="frontier", frontier=[0.8, 0.5, "-inf"])]},
        *extra_results,
    ]
    return {
        "schema": "certkit.results/1",
        "run": {"certkit_version": "0.1.0", "started": "2026-11-22T00:00:00Z", "finished": "x", "duration_s": 1.0, "seed": 0,
                "git": {"commit": EVIL, "dirty": True}, "packages": {"torch": EVIL}, "settings": {"alpha": 0.01}, "args": [EVIL],
                "gate": {"min_pass_rate": None}, "models": [EVIL], "oracles": ["o"], "devices": [], "workers": 0},
        "summary": {"requirements": 5, "certified": 2, "not certified": 1, "inconclusive": 1, "error": 1, "pass_rate": 0.4,
                    "samples": 400, "forward_samples": 400, "gate": "failed"},
        "results": results,
        "cases": {"ab" * 32: {"id": EVIL, "prompt": EVIL, "hash": "ab" * 32,
                              "thumbnail": "data:image/png;base64,iVBORw0KGgo=)}</style><script>alert(3)</script>"}},
    }


def test_hostile_text_is_escaped_everywhere():
    html = render_report(_doc())
    assert "<script" not in html.lower()
    assert 'onmouseover="alert' not in html and "<img" not in html
    assert "&lt;script&gt;" in html  # shown, as text
    assert "alert(3)" not in html  # a thumbnail that is not a plain base64 PNG is not embedded


def test_table_rows_show_the_prompt():
    doc = _doc()
    doc["cases"]["ab" * 32]["prompt"] = "hand the knife to the person standing by the red door"
    page = render_report(doc)
    table = page[page.index('<div id="requirements">'):]
    assert ">hand the knife to the person standing b…<" in table  # 40 characters shown, the ellipsis included
    assert 'title="hand the knife to the person standing by the red door"' in table  # the rest on hover
    doc["cases"]["ab" * 32]["prompt"] = EVIL

    class Titles(HTMLParser):
        titles: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "td" and dict(attrs).get("title"):
                self.titles.append(dict(attrs)["title"])

    parser = Titles()
    parser.feed(render_report(doc))
    assert EVIL in parser.titles  # a hostile prompt reaches the tooltip as text, attribute quotes and all escaped


def test_every_status_and_the_frontier_region_are_rendered():
    html = render_report(_doc())
    for status in ("certified", "not certified", "inconclusive", "error"):
        assert f'class="r-{status.split(" ")[0]}"' in html
    assert 'class="region"' in html and "Certified accuracy" in html
    assert "Gate FAILED" in html


class _Refs(HTMLParser):
    """Every URL-bearing attribute and every element name, as a browser's parser sees them."""

    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset", "poster", "data")]
        self.refs += ["on-attribute:" + k for k, _ in attrs if k.startswith("on")]


def test_self_contained_no_external_references():
    html = render_report(_doc())
    parser = _Refs()
    parser.feed(html)
    assert all(r.startswith(("data:", "#")) for r in parser.refs), parser.refs
    assert not {"script", "img", "iframe", "link", "object", "embed"} & set(parser.tags)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"url\((?!data:image/png;base64,)", html)


def test_five_thousand_requirements_stay_small():
    rows = [{"nodeid": f"t.py::test_x[c{i}-{d}]", "status": "certified", "test_outcome": "passed", "error": None,
             "certificates": [_cert("certified", f"c{i}", edits=d, case_hash=f"{i:064x}")]} for i in range(1250) for d in range(4)]
    doc = _doc(rows)
    html = render_report(doc)
    assert len(html.encode()) < 1.5 * 2**20


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The demo audit's report, produced by running the audit suites for real."""
    root = Path(__file__).parents[1]
    out = tmp_path_factory.mktemp("demo-report")
    res = subprocess.run([sys.executable, "-m", "pytest", "audits", "-q", "-p", "no:cacheprovider", "--certkit-json", str(out / "results.json"),
                          "--certkit-report", str(out / "audit.html"), "--certkit-cache-dir", str(out / "cache")],
                         cwd=root, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:]
    return out


def test_demo_report_in_headless_chromium(demo_report):
    browser = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-quic", f"--user-data-dir={demo_report / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND"]
    url = (demo_report / "audit.html").resolve().as_uri()
    shot = subprocess.run([browser, *flags, "--window-size=1280,2000", f"--screenshot={demo_report / 'shot.png'}", url],
                          capture_output=True, text=True, timeout=120)
    assert (demo_report / "shot.png").stat().st_size > 10_000
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    doc = json.loads((demo_report / "results.json").read_text())
    s = doc["summary"]
    assert "<title>certkit audit report</title>" in dom.stdout
    assert f'id="n-certified">{s["certified"]}<' in dom.stdout and f'id="n-not-certified">{s["not certified"]}<' in dom.stdout
    assert dom.stdout.count('<svg class="chart"') >= 1
    logs = shot.stderr + dom.stderr
    assert "CONSOLE" not in logs and "Uncaught" not in logs and "Refused to" not in logs, logs[-2000:]
    assert "net::ERR" not in logs and "Failed to load resource" not in logs, logs[-2000:]


def test_overlapping_requirements_show_the_worst_status_on_top():
    from certkit.report import COLOURS, _case_chart

    svg = _case_chart([_cert("not certified", outcome="throw"), _cert("certified", outcome="safe")])
    assert svg.index(COLOURS["certified"]) < svg.index(COLOURS["not certified"])  # drawn later = on top
    assert "throw not certified: d=1" in svg and "safe certified: d=1" in svg
