"""The HTML audit report: escaping, every status, self-containment, and a real headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest

from certkit.report import render_report

EVIL = '</title><script>alert("x")</script>" onmouseover="alert(1)\' <img src=x onerror=alert(2)>'


def _cert(status, case_id="c", **kw):
    base = dict(case_id=case_id, outcome="harmless", edits=1, radius=0.25, threshold=0.5, alpha=0.01, status=status, p_a_lower=0.9,
                p_a_upper=0.99, p_star=0.95, p_adv=0.4, n=100, successes=95, seed=1, mode="certify", n_max=1000,
                image_kernel={"kind": "gaussian", "sigma": 0.5}, text_kernel=None, model_fingerprint="m", oracle_fingerprint="o",
                oracle_error=0.0, case_hash="ab" * 32, label_counts={}, frontier=[], timings={}, cached=False,
                certified=status == "certified")
    base.update(kw)
    return base


def _doc(extra_results=()):
    results = [
        {"nodeid": "t.py::test_a[c1]", "status": "certified", "test_outcome": "passed", "error": None,
         "certificates": [_cert("certified", EVIL)]},
        {"nodeid": "t.py::test_a[c2]", "status": "not certified", "test_outcome": "failed", "error": None,
         "certificates": [_cert("not certified")]},
        {"nodeid": "t.py::test_b[c3]", "status": "inconclusive", "test_outcome": "failed", "error": None,
         "certificates": [_cert("inconclusive")]},
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


def _script_blocks(html):
    return re.findall(r"<script>(.*?)</script>", html, flags=re.S)


def test_hostile_text_is_escaped_everywhere():
    html = render_report(_doc())
    ours = (Path(__file__).parents[1] / "certkit" / "report" / "templates" / "report.js").read_text()
    assert html.lower().count("<script") == 1 and _script_blocks(html) == [ours]  # the report's own script, nothing else
    assert 'onmouseover="alert' not in html and "<img" not in html
    assert "&lt;script&gt;" in html  # shown, as text
    assert "alert(3)" not in html  # a thumbnail that is not a plain base64 PNG is not embedded


def test_the_script_is_allowed_by_its_hash_and_nothing_else():
    import base64
    import hashlib

    html = render_report(_doc())
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    digest = base64.b64encode(hashlib.sha256(_script_blocks(html)[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "unsafe-eval" not in csp
    assert "connect-src" not in csp  # default-src 'none': no fetch, no XHR, no websocket


def test_prompts_are_bounded_and_in_the_case_index():
    doc = _doc()
    long = "hand the knife to the person standing by the red door " * 10  # 540 characters
    doc["cases"]["ab" * 32]["prompt"] = long
    doc["cases"]["ab" * 32]["id"] = "c"
    page = render_report(doc)
    index = page[page.index('<div id="case-index">'):page.index('id="metadata"')]
    assert long[:160] in index and long[:161] not in index and "… (380 more characters)" in index
    cards = page[page.index('id="cases"'):page.index('id="requirements"')]
    assert long[:300] in cards and long[:301] not in cards and "… (240 more characters)" in cards


def test_control_and_bidi_characters_cannot_act():
    doc = _doc()
    doc["cases"]["ab" * 32]["prompt"] = "refund \u202eexe.txt\u202c to \u2067admin\u2069\x00 now"
    doc["results"][0]["certificates"][0]["case_id"] = "case\u202e1"
    doc["results"][3]["error"] = "bad byte \x1b[31m here"
    page = render_report(doc)
    for ch in ("\u202e", "\u202c", "\u2067", "\u2069", "\x00", "\x1b"):
        assert ch not in page, repr(ch)
    assert '<span class="cc">&lt;U+202E&gt;</span>exe.txt' in page and '<span class="cc">&lt;U+0000&gt;</span>' in page
    assert 'case<span class="cc">&lt;U+202E&gt;</span>1' in page and '<span class="cc">&lt;U+001B&gt;</span>' in page
    assert "unicode-bidi:isolate" in page and "<bdi>" in page  # cells isolate by style, inline text by <bdi>


def test_every_status_and_the_frontier_region_are_rendered():
    html = render_report(_doc())
    rows = html[html.index('<div id="requirements">'):html.index('<div id="case-index">')]
    for code, status in (("n", "not certified"), ("i", "inconclusive"), ("e", "error")):
        assert re.search(rf'<tr class="?{code}"?[ >]', rows), status
        assert f"<td>{ {'n': '✗', 'i': '?', 'e': '!'}[code]} {status}" in rows  # the word and its symbol
    assert re.search(r"<tr(?: id=r\d+)?><td>[^<]*<td>", rows)  # a certified row: no class, its status word comes from the style
    assert 'tr:not([class]) td:last-child::after{content:"✓ certified"}' in html
    assert 'class="region"' in html and "Certified accuracy" in html
    assert re.search(r'id="verdict">\s*FAILED', html)


def test_each_table_states_its_settings():
    doc = _doc([{"nodeid": "t.py::test_c[c6]", "status": "certified", "test_outcome": "passed", "error": None,
                 "certificates": [_cert("certified", text_kernel={"kind": "uniform_replace", "beta": 0.1, "vocab_size": 35},
                                        alpha=0.001, n_max=5000, threshold=0.6)]}])
    html = render_report(doc)
    def shown(*phrases):
        return " · ".join(f"<bdi>{p}</bdi>" for p in phrases)

    assert shown("outcome harmless", "tau 0.5", "sigma 0.5", "beta 0 (no text noise)", "alpha 0.01", "n_max 1000") in html
    assert shown("tau 0.6", "sigma 0.5", "beta 0.1", "uniform replacement over 35 tokens", "alpha 0.001", "n_max 5000") in html


def test_only_frontiers_get_a_chart_card():
    """A certify-mode requirement is a matrix cell and a table row, never a chart card; a report-mode frontier is charted."""
    doc = _doc([{"nodeid": "t.py::test_guard[c1]", "status": "certified", "test_outcome": "passed", "error": None,
                 "certificates": [_cert("certified", "c", model_fingerprint="guardmodel123456", mode="frontier", frontier=[0.5, 0.2])]}])
    html = render_report(doc)
    cards = html[html.index('id="cases"'):html.index('id="requirements"')]
    assert cards.count('class="casecard"') == 2 and cards.count('<svg class="chart"') == 2  # test_f's frontier and test_guard's
    assert "t.py::<wbr>test_<wbr>guard</bdi> · model guardmodel12" in cards and "test_<wbr>a<" not in cards
    no_frontier = _doc()
    del no_frontier["results"][4]
    html = render_report(no_frontier)
    assert 'class="casecard"' not in html and "<svg" not in html and "Frontiers (report mode)" not in html


def test_numbers_are_rounded_against_the_requirement():
    from certkit.report.numbers import rounded

    assert rounded(0.788145, "down") == "0.7881" and rounded(0.788145, "up") == "0.7882"
    assert rounded(0.99999, "down") == "0.9999" and rounded(1.0, "up") == "1" and rounded(0.0, "down") == "0"
    assert rounded(0.25, "down") == "0.25" and rounded(1.23456e-5, "down") == "1.234e-05"


def test_trend_chart_marks_each_run_with_its_model_and_gate():
    from certkit.report.charts import GATE_COLOURS, trend_chart

    history = [{"pass_rate": 0.5, "mean_radius": 0.2, "finished": "2026-11-01T09:15:00Z", "models": ["old" * 8], "gate": "passed",
                "run_id": "r1", "certified": 1, "requirements": 2},
               {"pass_rate": 0.0, "mean_radius": 0.0, "finished": "2026-11-01T17:40:00Z", "models": ["new" * 8], "gate": "incomplete",
                "run_id": "r2", "certified": 0, "requirements": 2},
               {"pass_rate": 0.9, "mean_radius": 0.3, "finished": "2026-11-30T00:00:00Z", "models": ["new" * 8],
                "run_id": "r3", "certified": 9, "requirements": 10}]
    svg = trend_chart(history)
    for label in ("certified (%)", "mean radius (l2)", "run (oldest left)", "2026-11-01 09:15", "2026-11-30 00:00", "100%", "0%",
                  "gate passed", "gate failed", "another model than the latest run"):
        assert label in svg, label
    titles = re.findall(r"<title>(run \d[^<]*)</title>", svg)
    assert len(titles) == 3  # one marker per run, each named
    assert "run 1 r1 · 2026-11-01 09:15 · model oldoldoldold (another model than the latest run) · gate PASSED" in titles[0]
    assert "gate INCOMPLETE" in titles[1] and "gate not recorded" in titles[2]  # an older line without its gate says so
    assert svg.count("<rect") == 2  # the run of another model is a square (the legend's square is the other)
    assert f'fill="{GATE_COLOURS["INCOMPLETE"]}"' in svg
    # the y-axis label fits the plot's height: it is short enough for the 11 px font (the old one ran past both ends)
    assert all(len(t) <= 20 for t in re.findall(r'rotate\([^)]*\)">([^<]+)<', svg))


def test_printed_page_header_cannot_break_out_of_its_css_string():
    doc = _doc()
    doc["run"]["run_id"] = 'x"}body{display:none}/*'
    html = render_report(doc)
    header = re.search(r'@top-left\{content:"([^"]*)"', html).group(1)
    assert "{" not in header and "}" not in header and "Gate".lower() in header.lower()


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
    assert not {"img", "iframe", "link", "object", "embed"} & set(parser.tags)
    assert parser.tags.count("script") == 1 and not any(r.startswith("src") for r in parser.refs)  # inline, no src
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
    res = subprocess.run([sys.executable, "-m", "pytest", "audits", "-q", "-p", "no:cacheprovider",
                          "--certkit-json", str(out / "results.json"),
                          "--certkit-report", str(out / "audit.html"), "--certkit-cache-dir", str(out / "cache")],
                         cwd=root, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:]
    return out


_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--no-first-run", "--disable-quic", "--enable-logging=stderr", "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _browse(demo_report, *args, fragment=""):
    browser = _chromium()
    url = (demo_report / "audit.html").resolve().as_uri() + fragment
    profile = f"--user-data-dir={demo_report / 'profile'}"
    return subprocess.run([browser, *_FLAGS, profile, *args, url], capture_output=True, text=True, timeout=180)


def _clean(logs):
    assert "CONSOLE" not in logs and "Uncaught" not in logs and "Refused to" not in logs, logs[-2000:]
    assert "net::ERR" not in logs and "Failed to load resource" not in logs, logs[-2000:]


def _rows(doc, status=None):
    return [c for r in doc["results"] for c in r["certificates"] if status is None or c["status"] == status]


def test_demo_report_in_headless_chromium(demo_report):
    shot = _browse(demo_report, "--window-size=1280,2000", f"--screenshot={demo_report / 'shot.png'}")
    assert (demo_report / "shot.png").stat().st_size > 10_000
    dom = _browse(demo_report, "--dump-dom")
    doc = json.loads((demo_report / "results.json").read_text())
    s = doc["summary"]
    assert "<title>certkit audit report</title>" in dom.stdout
    assert f'id="n-certified">{s["certified"]}<' in dom.stdout and f'id="n-not-certified">{s["not certified"]}<' in dom.stdout
    assert not any(c["mode"] == "frontier" for c in _rows(doc))  # the demo certifies: cells and rows, no chart card
    assert '<svg class="chart"' not in dom.stdout and 'class="casecard"' not in dom.stdout
    assert f'data-shown="{len(_rows(doc))}"' in dom.stdout and 'data-ready="' in dom.stdout  # the script ran, every row shown
    assert '<form id="filters">' in dom.stdout  # unhidden by the script
    # the matrix: every requirement is one mark, its status as a symbol (not colour alone), linking to its row
    matrix = dom.stdout[dom.stdout.index('<div id="matrix">'):dom.stdout.index("</table>", dom.stdout.index('<div id="matrix">'))]
    marks = re.findall(r'<a href="#(r\d+)" class="m (\w)" title="([^"]*)">(.)<small>', matrix)
    symbols = {"certified": "✓", "not certified": "✗", "inconclusive": "?", "error": "!"}
    assert sorted(symbol for *_, symbol in marks) == sorted(symbols[c["status"]] for c in _rows(doc))
    assert all(title.startswith(next(s for s, sym in symbols.items() if sym == symbol)) for _, _, title, symbol in marks)
    for anchor, *_ in marks:
        assert f'id="{anchor}"' in dom.stdout
    assert dom.stdout.count('<a href="#r') == len(_rows(doc)) == s["requirements"]
    _clean(shot.stderr + dom.stderr)


def test_a_matrix_link_opens_its_row_in_chromium(demo_report):
    """A mark links to its requirement's row; the row's group opens even when it was closed (all certified)."""
    doc = json.loads((demo_report / "results.json").read_text())
    html = (demo_report / "audit.html").read_text()
    closed = re.search(r'<details class="group" data-test="([^"]+)">', html)  # a group of certified rows only: closed
    assert closed, "the demo has a group with every requirement certified"
    row = re.search(r'<tr id=(r\d+)>', html[closed.start():]).group(1)
    dom = _browse(demo_report, "--dump-dom", fragment=f"#{row}")
    assert re.search(rf'<details class="group" data-test="{re.escape(closed.group(1))}" open="">', dom.stdout)
    assert f'data-shown="{len(_rows(doc))}"' in dom.stdout  # the link is not a filter: every row is still shown
    _clean(dom.stderr)


def test_filters_and_sorting_work_in_chromium(demo_report):
    """The filter state lives in the address (shareable): the page applies it on load, as it does on input."""
    doc = json.loads((demo_report / "results.json").read_text())
    bad = _rows(doc, "not certified")
    dom = _browse(demo_report, "--dump-dom", fragment="#filter?status=n")
    assert f'data-shown="{len(bad)}"' in dom.stdout and len(bad) > 0
    visible = re.findall(r"<tr class=\"n\"(?: id=\"r\d+\")?><td>([^<]+)<", dom.stdout)
    assert sorted(visible) == sorted(c["case_id"] for c in bad)
    assert re.search(r"<tr (?:id=\"r\d+\" )?hidden", dom.stdout)  # the certified ones are hidden, not removed
    one = bad[0]["case_id"]
    dom = _browse(demo_report, "--dump-dom", fragment=f"#filter?case={one}&status=c,n,i,e,x")
    assert f'data-shown="{sum(c["case_id"] == one for c in _rows(doc))}"' in dom.stdout
    outcome = bad[0]["outcome"]
    dom = _browse(demo_report, "--dump-dom", fragment=f"#filter?sort=n-&outcome={outcome}")
    assert f'data-shown="{sum(c["outcome"] == outcome for c in _rows(doc))}"' in dom.stdout
    assert 'aria-sort="descending"' in dom.stdout
    tables = re.findall(rf'<div class="req " data-outcome="{outcome}">(.*?)\n</div>\n', dom.stdout, flags=re.S)
    assert tables
    for table in tables:
        header = re.findall(r'data-key="([^"]+)"', table)
        column = header.index("n")
        body = table.split("</thead>")[1]
        ns = [int(re.findall(r"<td[^>]*>([^<]*)", row)[column]) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)]
        assert ns == sorted(ns, reverse=True) and ns
    _clean(dom.stderr)


def test_printed_report_shows_every_requirement(demo_report):
    """Saved as PDF, the report holds every requirement row (collapsed groups open, rows not cut) and the page header."""
    try:
        import pypdf
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pypdf is not installed; it is in the test extra (.[test])")
        pytest.skip("pypdf is not installed (pip install -e '.[test]')")
    pdf = demo_report / "audit.pdf"
    out = _browse(demo_report, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    assert pdf.stat().st_size > 10_000, out.stderr[-2000:]
    reader = pypdf.PdfReader(str(pdf))
    text = unicodedata.normalize("NFKC", "\n".join(page.extract_text() for page in reader.pages))  # the PDF's "ﬁ" ligatures
    doc = json.loads((demo_report / "results.json").read_text())
    flat = re.sub(r"\s+", "", text)
    for c in _rows(doc):
        assert re.sub(r"\s+", "", c["case_id"]) in flat, c["case_id"]
    assert flat.count("certified") >= len(_rows(doc))  # every row's status word, the style's "certified" included
    run_id = doc["run"]["run_id"]
    assert sum(run_id in p.extract_text() for p in reader.pages) == len(reader.pages) > 1  # the header on every page
    assert "gate PASSED" in text
    # a reviewer's printout: at most 7 A4 pages, every requirement's status (symbol, n, p_A lower, eps) on the first two
    assert len(reader.pages) <= 7, len(reader.pages)
    first = unicodedata.normalize("NFKC", "\n".join(page.extract_text() for page in reader.pages[:2]))
    shown = re.findall(r"([✓✗?!])\s*n (\d+) · p≥([\d.e-]+) · ε ([\d.]+)", first)
    assert sorted((sym, int(n)) for sym, n, _, _ in shown) == sorted(
        ({"certified": "✓", "not certified": "✗", "inconclusive": "?", "error": "!"}[c["status"]], c["n"]) for c in _rows(doc))
    assert all(float(lower) <= c for (_, _, lower, _), c in zip(sorted(shown, key=lambda t: float(t[2])),
                                                                 sorted(c["p_a_lower"] for c in _rows(doc))))  # rounded down


def test_removed_requirements_are_listed_in_the_report_with_their_baseline_status():
    from certkit.regression import compare

    gone = {"nodeid": "t.py::test_gone[c9]", "status": "not certified", "certificates": [_cert("not certified")]}
    base, cur = _doc([gone]), _doc()
    base["results"][0]["certificates"][0]["successes"] = 99  # this run's 95/100 is within sampling noise of it
    result = compare(base, cur)
    assert result["removed"] == ["t.py::test_gone[c9]"]
    assert result["removed_records"] == [{"key": "t.py::test_gone[c9]", "nodeid": "t.py::test_gone[c9]", "status": "not certified"}]
    html = render_report(cur, baseline=result)
    assert "Removed requirements (in the baseline, not in this run)" in html
    assert ("t.py::test_gone[c9]</bdi></b>: was not certified in the baseline" in html
            or "t.py::test_gone[c9]</b>: was not certified" in html)
    assert "Holm-corrected over the 4 compared requirements at alpha = 0.01 (the run&#39;s alpha)" in html
    assert "within sampling noise: 99/100 -&gt; 95/100 successes (anytime-valid p = " in html


def test_overlapping_requirements_show_the_worst_status_on_top():
    from certkit.report import COLOURS, _case_chart

    svg = _case_chart([_cert("not certified", outcome="throw"), _cert("certified", outcome="safe")])
    assert svg.index(COLOURS["certified"]) < svg.index(COLOURS["not certified"])  # drawn later = on top
    assert "throw not certified: d=1" in svg and "safe certified: d=1" in svg


def test_without_scripts_every_row_is_there_and_the_form_is_hidden():
    doc = _doc()
    html = render_report(doc)
    rows = html[html.index('<div id="requirements">'):html.index('<div id="case-index">')]
    certificates = sum(len(r["certificates"]) for r in doc["results"])
    without = sum(1 for r in doc["results"] if not r["certificates"])
    assert len(re.findall(r"(?<!<thead>)<tr(?: class=\w| class=\"\w\")?(?: id=\"?r\d+\"?)?>", rows)) == certificates + without
    assert "hidden" not in rows and '<form id="filters" hidden>' in html


def test_certkit_report_reads_the_document_through_results_and_names_what_it_cannot_use(tmp_path, capsys):
    """A file without the counts a comparison needs still renders; compared with a baseline it is refused by name."""
    from certkit.cli import main
    from certkit.results import write_results

    doc = _doc()
    for record in doc["results"]:
        for cert in record["certificates"]:
            del cert["successes"]  # as a file of an older certkit
    path = tmp_path / "results.json"
    write_results(path, doc)
    assert main(["report", str(path), "-o", str(tmp_path / "a.html")]) == 0
    assert re.search(r'id="verdict">\s*FAILED', (tmp_path / "a.html").read_text())
    with pytest.raises(SystemExit) as exc:
        main(["report", str(path), "-o", str(tmp_path / "b.html"), "--baseline", str(path)])
    assert exc.value.code == 2 and "'successes' must be a number" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/1", "results": []}))
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "other.json"), "-o", str(tmp_path / "c.html")])
    assert exc.value.code == 2 and "is not a certkit results file" in capsys.readouterr().err
    assert not (tmp_path / "b.html").exists() and not (tmp_path / "c.html").exists() and not list(tmp_path.glob("*.tmp"))


def _region(html, start, end):
    begin = html.index(start)
    return html[begin:html.index(end, begin + len(start))]


def test_the_verdict_is_stated_once_with_the_counts():
    doc = _doc()
    doc["summary"].update(gate="passed", gate_reason="PASSED: pass rate 90.3% against the required 85.0%")
    html = render_report(doc)
    top = _region(html, "<body>", 'id="matrix"')
    assert top.count("PASSED") == 1 and "PASSED: pass rate 90.3% against the required 85.0%" in top
    assert top.count("90.3%") == 1  # the counts do not repeat the verdict's numbers
    assert re.search(r'<b id="n-certified">2</b> ✓ certified', top) and re.search(r'<b id="n-not-certified">1</b> ✗ not certified', top)


def test_the_matrix_has_a_mark_per_requirement_linking_to_its_row():
    doc = _doc()
    html = render_report(doc)
    matrix = _region(html, '<div id="matrix">', "</table>")
    marks = re.findall(r'<a href="#(r\d+)" class="m (\w)" title="([^"]*)">(.)<small>([^<]*)</small></a>', matrix)
    assert len(marks) == 5  # four certificates and the requirement without one
    symbols = {"c": "✓", "n": "✗", "i": "?", "e": "!"}
    assert sorted(code for _, code, _, _, _ in marks) == ["c", "c", "e", "i", "n"]
    for anchor, code, title, symbol, line in marks:
        assert symbol == symbols[code]
        assert re.search(rf'<tr(?: class="?{code}"?)? id="?{anchor}"?>', html), anchor  # the row it links to exists, same status
        if code != "e" and "frontier" not in title:
            assert "n 100" in title and "p_A lower 0.9 (p* 0.95, margin −0.0500)" in title and "eps 0.25" in title
            assert line == "n 100 · p≥0.9 · ε 0.25"  # shown in print
    assert "n 100 · p≥0.9 · ε 0.8 at d 0" in [line for *_, line in marks]  # a frontier's mark: its radius at d = 0
    # columns: a test function at one setting and budget, its id breakable only between words
    heads = re.findall(r'<th scope="col" title="([^"]*)">(.*?)<span class="bud">([^<]*)</span>', matrix)
    assert [(t.split(" · ")[0], b) for t, _, b in heads] == [
        ("t.py::test_a", "d 1 · eps 0.25"), ("t.py::test_b", "d 1 · eps 0.25"), ("t.py::test_b", "no certificate"),
        ("t.py::test_f", "frontier (report mode)")]
    assert heads[0][1] == "<bdi>test_<wbr>a</bdi>"


def test_the_matrix_is_bounded_and_worst_first():
    from certkit.report import MAX_MATRIX_ROWS

    rows = [{"nodeid": f"t.py::test_x[c{i:04d}]", "status": "certified" if i % 7 else "not certified", "test_outcome": "passed",
             "error": None, "certificates": [_cert("certified" if i % 7 else "not certified", f"c{i:04d}", case_hash=f"{i:064x}")]}
            for i in range(400)]
    html = render_report(_doc(rows))
    matrix = _region(html, '<div id="matrix">', "</table>")
    assert matrix.count("<tr><th scope=row>") == MAX_MATRIX_ROWS
    assert re.search(rf"The {MAX_MATRIX_ROWS} worst of 40\d cases are shown", html)
    assert matrix.count('class="m n"') == 1 + sum(1 for i in range(400) if i % 7 == 0)  # every not certified one is in


def test_test_ids_wrap_only_between_words():
    from certkit.report import breakable

    shown = str(breakable("audits/guard/test_guard.py::test_unsafe_pair_keeps_a_detection_floor[1-1.0-unsafe-01]"))
    words = re.sub(r"</?bdi>", "", shown).split("<wbr>")
    assert "".join(words) == "audits/guard/test_guard.py::test_unsafe_pair_keeps_a_detection_floor[1-1.0-unsafe-01]"
    assert words[:4] == ["audits/", "guard/", "test_", "guard.py::"] and "floor" in words and "[1-" in words
    assert str(breakable("<b>x_y")) == "<bdi>&lt;b&gt;x_<wbr>y</bdi>"  # escaped first


def test_shown_numbers_never_contradict_the_verdict():
    from certkit.report.numbers import margin_text, shown_pair

    p_star = 0.8413447460685433
    lower, star = shown_pair(0.84136, p_star)  # certified by 1.5e-05: four digits would read 0.8413 < 0.8414
    assert float(lower) >= float(star) and float(lower) <= 0.84136 and float(star) >= p_star and (lower, star) == ("0.84136", "0.84135")
    assert shown_pair(p_star, p_star) == ("0.8413", "0.8413")  # at p*: shown equal
    assert shown_pair(0.8412, p_star) == ("0.8412", "0.8414")  # not certified: the usual rounding keeps the order
    assert margin_text(0.84136 - p_star) == "+1.5e-05" and margin_text(0.0) == "at p*" and margin_text(-0.05) == "−0.0500"
    assert margin_text(0.00999999) == "+0.0099" and margin_text(-9.99e-7) == "−1.0e-06" and margin_text(None) == "–"
    doc = _doc()
    cert = doc["results"][0]["certificates"][0]
    cert.update(p_a_lower=p_star, p_star=p_star, margin=0.0)  # the record's exact margin is used
    html = render_report(doc)
    assert "<td>0.8413<td>0.99<td>0.8413<td>at p*<td>100" in html


def test_test_data_is_shown():
    doc = _doc()
    doc["test_data"] = {"sources": [{"path": "cases/guard.jsonl", "sha256": "0123456789abcdef" * 4, "format": "jsonl", "rows": 24}],
                        "cases": 24, "meta": {"split": {"unsafe": 8, "harmless": 16}}, "image_sizes": {"32x32": 24}}
    section = _region(render_report(doc), '<div class="guarantee" id="test-data">', "</div>")
    assert "<b>24</b> cases; image sizes: 32x32 (24)" in section
    assert "<bdi>cases/guard.jsonl</bdi> (jsonl, 24 rows, sha256 0123456789ab)" in section
    assert "<bdi>split</bdi>: <bdi>harmless</bdi> 16, <bdi>unsafe</bdi> 8" in section
    assert 'id="test-data"' not in render_report(_doc())


def test_a_measured_oracle_error_states_the_joint_guarantee():
    doc = _doc()
    cal = {"upper": 0.0123456, "n": 500, "mistakes": 2, "alpha": 0.001, "digest": "sha256:" + "ab" * 32, "kind": "false_outcome",
           "outcome": "harmless", "oracle": "guard@1:abc"}
    doc["results"][0]["certificates"][0]["oracle_calibration"] = cal
    html = render_report(doc)
    promise = _region(html, 'id="oracle-calibration"', "</p>")
    assert ("Oracle guard@1:abc: oracle false-harmless rate measured at most 0.01235 (2 mistakes in 500 labelled answers, alpha_o "
            "0.001), calibration set sha256:abababababab, holds with probability &gt;= 1 - (alpha + alpha_o) = 0.989") in promise
    assert "calibration set sha256:abababababab" in _region(html, '<div id="requirements">', '<div id="case-index">')  # its table says so
    assert 'id="oracle-calibration"' not in render_report(_doc())


def test_the_comparison_names_fingerprints_and_every_changed_requirement():
    from certkit.regression import compare

    base, cur = _doc(), _doc()
    base["run"]["models"], cur["run"]["models"] = ["a" * 64], ["b" * 64]
    base["results"][1]["certificates"][0].update(status="certified", successes=100)  # c2 was certified: a regression
    base["results"][2]["certificates"][0].update(status="certified", successes=100)  # c3: within noise (now inconclusive)
    base["results"][0]["certificates"][0].update(status="not certified", successes=90)  # c1 is an improvement
    comparison = compare(base, cur)
    html = render_report(cur, baseline=comparison)
    top = _region(html, "<body>", 'id="matrix"')
    if "fingerprints" in comparison:  # the regression module states them (interfaces.md)
        assert "model changed" in top
        fp = _region(html, 'id="fingerprints"', "</table>")
        assert "a" * 64 in fp and "b" * 64 in fp and "(model changed)" in fp
    section = _region(html, '<div id="baseline"', "<h2>What the certificates promise")
    for kind in ("regressions", "improvements"):
        named = {e["nodeid"] for e in comparison[kind]}
        assert named, kind
        listed = _region(section, f'<ul id="{kind}">', "</ul>")
        assert all(n in listed for n in named), kind
    from certkit.report import baseline_counts

    assert baseline_counts(comparison) in section
    assert f"{len(comparison['regressions'])} regressions" in baseline_counts(comparison)


def test_each_row_shows_its_status_over_the_last_runs():
    doc = _doc()
    history = [{"pass_rate": 0.5, "finished": f"2026-11-0{i}T00:00:00Z", "statuses": {"t.py::test_a[c1]": s}}
               for i, s in enumerate(["certified", "not certified", "certified"], 1)]
    html = render_report(doc, history=history)
    rows = _region(html, '<div id="requirements">', '<div id="case-index">')
    assert '<td><b class="c">✓</b><b class="n">✗</b><b class="c">✓</b><td>' in rows
    assert "<td>···<td>" in rows  # a requirement the runs did not have
    assert "history" in _region(rows, "<thead>", "</thead>")
    assert 'data-key="history"' not in render_report(doc)  # no line with statuses: no column


def test_past_its_column_limit_the_matrix_has_one_column_per_test_errors_included():
    from certkit.report import MAX_MATRIX_COLUMNS, build_context

    rows = [{"nodeid": f"t.py::test_x[c{i}-{d}]", "status": "certified", "test_outcome": "passed", "error": None,
             "certificates": [_cert("certified", f"c{i}", edits=d, case_hash=f"{i:064x}")]}
            for i in range(3) for d in range(MAX_MATRIX_COLUMNS)]
    rows.append({"nodeid": "t.py::test_x[c9-0]", "status": "error", "test_outcome": "failed", "error": "boom", "certificates": []})
    matrix = build_context(_doc(rows))["matrix"]
    assert [c["test"] for c in matrix["columns"]] == ["t.py::test_a", "t.py::test_b", "t.py::test_f", "t.py::test_x"]
    assert matrix["dropped_columns"] == 0 and matrix["columns"][-1]["budget"] == "every budget"
    assert str(matrix["rows"]).count('class="m ') == 5 + 3 * MAX_MATRIX_COLUMNS + 1  # every requirement, the error too


def test_a_run_without_requirements_says_so_instead_of_an_empty_matrix():
    doc = _doc()
    doc["results"], doc["cases"] = [], {}
    doc["summary"].update(requirements=0, certified=0, gate="incomplete", gate_reason="INCOMPLETE: the run did not finish (x)")
    html = render_report(doc)
    assert "No requirement finished: there is nothing to show." in html and "<thead><tr><th>case</thead>" not in html
    assert re.search(r'id="verdict">\s*INCOMPLETE: the run did not finish \(x\)', html)
