"""The HTML audit report: one self-contained file rendered with Jinja2 (autoescape on).

No network, no external file: inline CSS, inline SVG charts, case thumbnails as data URIs (matrix rows and frontier
cards only), and one inline script allowed by its SHA-256 hash in the Content-Security-Policy (filters, sorting,
opening a linked row, print preparation). With scripts off every section and every row is still there; the filter
form stays hidden.

Sections, in order: the verdict (one line: the gate's reason) and the counts; the matrix of cases (rows) x requirement
tests (columns: the test function at one setting and budget), each cell a status symbol in colour with n, the p_A lower
bound and eps on hover and in print, linking to the requirement's row; the baseline comparison (both runs' model and
oracle fingerprints, "model changed" / "oracle changed", the regressions, improvements, removed, changed and
within-noise requirements by name) and the trend; the promise and its limits, with the measured oracle error and the
joint guarantee where the certificates carry an oracle calibration; the test data (results.json's ``test_data``);
report-mode frontiers (certified accuracy and a (d, eps) chart per frontier, nowhere else); the requirement tables
(per test, one table per settings, captioned from certkit.requirement's table, with each requirement's margin
p_A lower - p* and its status over the last runs of the history); the case index and the run metadata. Rows are
built here as compact HTML, so that 50,000 requirements stay within a few megabytes (BENCHMARKS.md).

Numbers never read against the verdict (:mod:`.numbers`): p_A lower bounds are rounded down and p* up, to four
significant digits or as many more as it takes for the shown pair to keep the true order; the margin carries its sign,
rounded down (a zero margin reads "at p*"). results.json has every number exact.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from .. import requirement
from ..certificate import CERTIFIED, ERROR, INCONCLUSIVE, NO_REQUIREMENT, NOT_CERTIFIED, from_json_float
from ..gate import COUNTED
from ..requirement import caption, of_certificate
from ..results import certificates, records, write_atomically
from .charts import COLOURS, STATUS_ORDER, SYMBOLS, accuracy_curves, case_chart, trend_chart, trend_runs
from .numbers import fmt, margin_of, margin_text, number, rounded, shown_pair
from .text import marked, visible

__all__ = ["render_report", "write_report", "COLOURS", "STATUS_ORDER", "SYMBOLS"]

_case_chart = case_chart  # the names tests and older callers use
MAX_CASE_CHARTS = 80  # frontier cards (report mode), worst first
MAX_BASELINE_ITEMS = 200  # per list of the baseline section (regressions, improvements, removed, within noise, changed)
MAX_MATRIX_ROWS = 200  # cases in the matrix; past it, the worst cases (the rest are in the tables)
MAX_MATRIX_COLUMNS = 24  # past it, one column per test function; past that, the first columns only
MAX_MATRIX_THUMBS = 80  # case thumbnails in the matrix's first rows
HISTORY_RUNS = 8  # runs in a row's status strip
CHUNK_ROWS = 500
ROW_PX = 22  # a table row's height on screen, for the space a block holds before it is laid out
PROMPT_CARD_CHARS = 300
PROMPT_INDEX_CHARS = 160
ERROR_CHARS = 1200
_PNG_URI = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+=*$")  # anything else is not embedded
_HEX = re.compile(r"^[0-9a-f]{12}$")
STATUS_CODE = {CERTIFIED: "c", NOT_CERTIFIED: "n", INCONCLUSIVE: "i", ERROR: "e", NO_REQUIREMENT: "x"}


def _calibration_key(c: dict) -> tuple:
    cal = c.get("oracle_calibration")
    return tuple(sorted((k, v) for k, v in cal.items() if isinstance(v, (str, int, float, type(None))))) if isinstance(cal, dict) else ()


_SETTINGS_CACHE: dict[tuple, tuple] = {}
_SHOWN: list = [None, ()]  # (the settings table it was read from, the names of its settings a certificate records)


def _shown_names() -> tuple:
    """The record fields of_certificate reads besides the kernels: the shown settings of certkit.requirement's table as
    it is now (a table extended at run time, as tests do, is read again and the cache starts over)."""
    table = requirement.SETTINGS
    if _SHOWN[0] is not table:
        _SHOWN[:] = [table, tuple(s.name for s in table if s.shown is not None)]
        _SETTINGS_CACHE.clear()
    return _SHOWN[1]


def _settings_key(c: dict) -> tuple:
    """What puts certificates in one table: the settings they were made under (certkit.requirement's table, read back
    from the record), the oracle's declared error and its measured calibration. Read once per distinct set of the
    fields it comes from (a run's thousands of certificates share a few)."""
    fields = (repr(c.get("image_kernel")), repr(c.get("text_kernel")), *(repr(c.get(name)) for name in _shown_names()),
              repr(c.get("oracle_error")), _calibration_key(c))
    key = _SETTINGS_CACHE.get(fields)
    if key is None:
        if len(_SETTINGS_CACHE) > 4096:
            _SETTINGS_CACHE.clear()
        key = _SETTINGS_CACHE[fields] = (*sorted(of_certificate(c).items()), ("oracle_error", c.get("oracle_error") or 0.0),
                                         ("oracle_calibration", _calibration_key(c)))
    return key


def calibration_text(cal: dict, alpha=None) -> str:
    """One sentence for a measured oracle error (a certificate's ``oracle_calibration``): its upper bound, the mistakes
    out of n, alpha_o, the calibration set's short digest, and, given the requirement's ``alpha``, the joint guarantee."""
    a_o = number(cal.get("alpha"))
    what = {"false_outcome": f"false-{cal.get('outcome')} rate", "disagreement": "disagreement rate"}.get(str(cal.get("kind")), "error")
    parts = [f"oracle {what} measured at most {rounded(cal.get('upper'), 'up')} ({cal.get('mistakes')} mistakes in {cal.get('n')} "
             "labelled answers" + (f", alpha_o {a_o:g}" if a_o is not None else "") + ")"]
    if cal.get("digest"):
        digest = str(cal["digest"])
        parts.append(f"calibration set {digest[:19] if digest.startswith('sha256:') else digest[:12]}")
    if number(alpha) is not None and a_o is not None:
        parts.append(f"holds with probability >= 1 - (alpha + alpha_o) = {1 - (alpha + a_o):.6g}")
    return ", ".join(parts)


def _settings_caption(key: tuple) -> Markup:
    """The table's caption: each setting's phrase (certkit.requirement.caption), each isolated as the untrusted text it
    may hold (an outcome label), then the declared oracle error and the measured one where there is one."""
    values = dict(key)
    parts = [visible(phrase) for phrase in caption(values)]
    if values["oracle_error"]:
        parts.append(f"declared oracle error {fmt(values['oracle_error'])}")
    if values.get("oracle_calibration"):
        parts.append(visible(calibration_text(dict(values["oracle_calibration"]), values.get("alpha"))))
    return Markup(" · ").join(parts)


_COLUMNS = ("case", "d", "eps", "p_A lower", "p_A upper", "p*", "margin", "n")


def _strip(statuses: list[str | None]) -> str:
    """A requirement's status over the last runs, oldest first: one symbol per run (``·`` where a run lacked it)."""
    return "".join(f'<b class="{STATUS_CODE.get(s, "x")}">{SYMBOLS.get(s, "?")}</b>' if s else "·" for s in statuses)


def _table(rows: list[tuple], with_change: bool, ids: dict, strips: dict | None) -> dict:
    """Compact HTML rows for one table. Columns whose value is the same in every row (d, eps) are stated once in
    the caption instead; certified rows carry no class (the page styles them by default). Status comes last; a row
    the matrix links to carries its id."""
    certs = [c for _, _, c, _, _ in rows]
    frontier = any(c.get("mode") == "frontier" for c in certs)
    constant = {}
    if not frontier:
        for name, field in (("d", "edits"), ("eps", "radius")):
            values = {str(c[field]) for c in certs}
            if len(values) == 1 and len(certs) > 1:
                constant[name] = certs[0][field]
    columns = ([c for c in _COLUMNS if c not in constant] + (["history"] if strips is not None else [])
               + (["vs baseline"] if with_change else []) + ["status"])
    out = []
    for _, _, c, change, key in rows:
        code = STATUS_CODE.get(c["status"], "x")
        anchor = ids.get(key)
        attrs = (f" class={code}" if code != "c" else "") + (f" id={anchor}" if anchor else "")
        cells = [f"<tr{attrs}>", f"<td>{visible(c['case_id'], isolate=False)}"]
        if frontier:
            radii = c.get("frontier") or ()
            cells.append(f"<td>{'0–' + str(len(radii) - 1) if c.get('mode') == 'frontier' else c['edits']}")
            cells.append("<td>" + (" / ".join(rounded(r, "down") for r in radii) if c.get("mode") == "frontier" else _radius(c["radius"])))
        else:
            if "d" not in constant:
                cells.append(f"<td>{c['edits']}")
            if "eps" not in constant:
                cells.append(f"<td>{_radius(c['radius'])}")
        lower, p_star = shown_pair(c["p_a_lower"], c["p_star"])
        cells.append(f"<td>{lower}<td>{rounded(c['p_a_upper'], 'up')}<td>{p_star}<td>{margin_text(margin_of(c))}<td>{c['n']}")
        if strips is not None:
            cells.append(f"<td>{strips.get(key) or strips[None]}")
        if with_change:
            cells.append(f"<td>{escape(change or '')}")
        # "✓ certified" is the style's text for a row without class; any other status is written with its symbol
        cells.append("<td>" if code == "c" else f"<td>{SYMBOLS.get(c['status'], '?')} {c['status']}")
        out.append("".join(cells))
    fixed = "; ".join(f"{name} = {_radius(v) if name == 'eps' else v} in every row" for name, v in constant.items())
    return {"chunks": chunks(out), "columns": columns, "constant": fixed}


def chunks(rows: list[str]) -> list[dict]:
    """Rows in blocks of CHUNK_ROWS, each its own table that the browser lays out only when it is scrolled into view
    (``content-visibility: auto``): bare pages of 50,000 rows took Chromium 6.3 s as one table, 1.75 s in blocks of
    1,000 (``python -m bench.bench_report --layout``, BENCHMARKS.md)."""
    return [{"rows": Markup("\n".join(rows[i:i + CHUNK_ROWS]) + "\n"), "height": ROW_PX * len(rows[i:i + CHUNK_ROWS])}
            for i in range(0, len(rows), CHUNK_ROWS)]


def _radius(r) -> str:
    """An image radius as the table shows it: the requirement's own value, rounded down to four digits (0 stays 0)."""
    return "0" if not from_json_float(r) else rounded(r, "down")


def _group_name(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]


def breakable(test_id: str) -> Markup:
    """A test id that may wrap only between its parts: after ``::``, ``/``, ``_``, ``-`` and before ``[`` (``<wbr>``),
    never inside a word; the text is escaped and isolated as :func:`certkit.report.text.visible` does."""
    shown = str(visible(test_id, isolate=False))
    return Markup("<bdi>" + re.sub(r"(::|/|_|-)|(?=\[)", lambda m: (m.group(1) or "") + "<wbr>", shown) + "</bdi>")


def _short(fingerprint: str) -> str:
    return str(fingerprint or "")[:12]


def _script() -> tuple[str, str]:
    """The report's script and its CSP source expression (``'sha256-…'`` of the exact text)."""
    text = resources.files("certkit.report").joinpath("templates/report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()
    return text, f"'sha256-{digest}'"


def _css_string(text: str) -> str:
    """Text for a CSS string literal (the printed page header): only characters that cannot end or escape it."""
    return re.sub(r"[^A-Za-z0-9 .:_·%()/-]", "", text)


def _baseline_lists(comparison: dict | None) -> list[tuple]:
    """The baseline section's lists, each at most MAX_BASELINE_ITEMS long: (title, id, entries, how many more).
    Removed requirements are listed with their baseline status (the gate decides what their removal means)."""
    if not comparison:
        return []
    lists = [("Regressions", "regressions", [{**r, "text": "; ".join(r["reasons"])} for r in comparison.get("regressions", [])]),
             ("Improvements", "improvements", [{**r, "text": "; ".join(r["reasons"])} for r in comparison.get("improvements", [])]),
             ("Removed requirements (in the baseline, not in this run)", "removed",
              [{**r, "text": f"was {r['status']} in the baseline"} for r in comparison.get("removed_records", [])]),
             ("New requirements (not in the baseline)", "new", [{"nodeid": k.split("#", 1)[0], "key": k, "text": "new"}
                                                                 for k in comparison.get("new", [])]),
             ("Changes within sampling noise (not regressions)", "within-noise",
              [{**r, "text": "; ".join(r["reasons"])} for r in comparison.get("within_noise", [])]),
             ("Changed requirements (another outcome, noise or case: counts not compared, status compared)", "changed",
              [{**r, "text": "; ".join(r["reasons"])} for r in comparison.get("changed", [])])]
    return [(title, id_,
             [{"key": e.get("key", e["nodeid"]), "nodeid": e["nodeid"], "text": e["text"]} for e in entries[:MAX_BASELINE_ITEMS]],
             max(0, len(entries) - MAX_BASELINE_ITEMS)) for title, id_, entries in lists if entries]


def baseline_counts(comparison: dict) -> str:
    """The comparison's counts in one line: the shared ``certkit.regression.counts_line`` where it exists (terminal,
    ``certkit diff`` and report then print the same line), else counted here from the same lists."""
    from .. import regression

    shared = getattr(regression, "counts_line", None)
    if shared is not None:
        return shared(comparison)
    n = {k: len(comparison.get(k) or []) for k in ("regressions", "improvements", "within_noise", "changed", "new", "removed")}
    return (f"{n['regressions']} regressions, {n['improvements']} improvements, {n['within_noise']} within sampling noise, "
            f"{n['changed']} changed, {n['new']} new, {n['removed']} removed")


def _fingerprints(comparison: dict | None) -> dict | None:
    """Both runs' model and oracle fingerprints and whether they changed (the comparison's ``fingerprints``,
    ``model_changed``, ``oracle_changed``), or None where the comparison has none."""
    if not comparison or not isinstance(comparison.get("fingerprints"), dict):
        return None
    fp = comparison["fingerprints"]

    def side(name, what):
        return [str(v) for v in ((fp.get(name) or {}).get(what) or [])]

    out = {what: {"baseline": side("baseline", what), "current": side("current", what)} for what in ("models", "oracles")}
    for what, word in (("models", "model"), ("oracles", "oracle")):
        before, after = out[what]["baseline"], out[what]["current"]  # changed: both runs state fingerprints, and they differ
        out[f"{word}_changed"] = bool(comparison.get(f"{word}_changed", bool(before) and bool(after) and set(before) != set(after)))
    return out


@functools.lru_cache(maxsize=1024)
def _without_outcome(settings: tuple) -> tuple:
    return tuple((k, v) for k, v in settings if k != "outcome")


def _column_key(i: dict) -> tuple:
    """A requirement's matrix column within its test: its settings but the outcome, and its budget (or frontier)."""
    c = i["cert"]
    return _without_outcome(i["settings"]), (("frontier",) if c.get("mode") == "frontier" else (c["edits"], str(c["radius"])))


def _column_head(group: str, certs: list[dict], by_budget: bool) -> dict:
    name = group.rsplit("::", 1)[-1]
    c = certs[0] if certs else None
    if c is None:
        budget = "no certificate"
    elif not by_budget:
        budget = "every budget"
    elif c.get("mode") == "frontier":
        budget = "frontier (report mode)"
    else:
        budget = f"d {c['edits']} · eps {_radius(c['radius'])}"
    settings = Markup(" · ").join(visible(p) for p in caption({k: v for k, v in of_certificate(c).items() if k != "outcome"})) if c else ""
    return {"name": breakable(name), "test": group, "budget": budget, "settings": settings}


def _matrix(items: list[dict]) -> dict:
    """Cases (rows) x requirement tests (columns). A column is a test function at one setting and budget (d, eps; or
    its frontier); past MAX_MATRIX_COLUMNS of those, one column per test function (a cell then holds a mark per
    requirement). At most MAX_MATRIX_ROWS rows: past it, the worst cases. Returns the layout; ``linked`` holds the keys
    of the requirements it shows (:func:`_matrix_html` draws it once they have their row ids)."""
    keys = [(i["group"], _column_key(i) if i["cert"] else ("none",)) for i in items]
    by_budget = len(set(keys)) <= MAX_MATRIX_COLUMNS
    columns: dict[tuple, list] = {}
    for i, key in zip(items, keys):
        columns.setdefault(key if by_budget else (i["group"], ()), []).append(i)  # past the limit: one column per test
    order = sorted(columns, key=lambda k: (k[0], k[1] == ("none",), str(k[1])))  # a test's requirements without a certificate last
    dropped_columns = max(0, len(order) - MAX_MATRIX_COLUMNS)
    order = order[:MAX_MATRIX_COLUMNS]
    rows: dict[str, dict] = {}
    for n, key in enumerate(order):
        for i in columns[key]:
            row = rows.setdefault(i["row"], {"key": i["row"], "label": i["label"], "thumb": i["thumb"], "cells": defaultdict(list),
                                             "worst": 9})
            row["cells"][n].append(i)
            row["worst"] = min(row["worst"], STATUS_ORDER.index(i["status"]) if i["status"] in STATUS_ORDER else 0)
    ordered = sorted(rows.values(), key=lambda r: str(r["label"]))
    if len(ordered) > MAX_MATRIX_ROWS:
        ordered = sorted(ordered, key=lambda r: (r["worst"], str(r["label"])))[:MAX_MATRIX_ROWS]
    return {"columns": [_column_head(k[0], [i["cert"] for i in columns[k] if i["cert"]], by_budget) for k in order],
            "ordered": ordered, "shown": len(ordered), "total": len(rows), "dropped_columns": dropped_columns,
            "linked": {i["key"] for row in ordered for marks in row["cells"].values() for i in marks}}


def _matrix_html(matrix: dict) -> Markup:
    """The matrix's rows: each requirement one mark, its status symbol in its colour, linking to its row (``#r<N>``),
    with its numbers in its title (hover) and in a line shown only in print."""
    html = []
    for n, row in enumerate(matrix["ordered"]):
        thumb = f'<i class="th t-{row["thumb"]}"></i>' if row["thumb"] and n < MAX_MATRIX_THUMBS else ""
        cells = [f"<tr><th scope=row>{thumb}{visible(row['label'], isolate=False)}"]
        for n in range(len(matrix["columns"])):
            marks = []
            for i in row["cells"].get(n, ()):
                title, line = _mark(i["cert"], i["record"])
                marks.append(f'<a href="#{i["id"]}" class="m {STATUS_CODE.get(i["status"], "x")}" title="{escape(marked(title))}">'
                             f'{SYMBOLS.get(i["status"], "?")}<small>{escape(marked(line))}</small></a>')
            cells.append("<td>" + "".join(marks))
        html.append("".join(cells))
    return Markup("\n".join(html))


def _mark(c: dict | None, record: dict) -> tuple[str, str]:
    """A matrix mark's hover title and print line."""
    status = c["status"] if c else record["status"]
    if c is None:
        return f"{status}: {str(record.get('error') or 'no certificate')[:200]}", status
    lower, p_star = shown_pair(c["p_a_lower"], c["p_star"])
    margin = margin_text(margin_of(c))
    budget = (f"frontier d 0–{len(c.get('frontier') or ()) - 1}" if c.get("mode") == "frontier"
              else f"d {c['edits']}, eps {_radius(c['radius'])}")
    title = (f"{status} · outcome {c.get('outcome')} · {budget} · n {c['n']} · p_A lower {lower} (p* {p_star}, margin {margin})")
    if c.get("mode") == "frontier":
        radii = c.get("frontier") or ()
        return title, f"n {c['n']} · p≥{lower} · ε {rounded(radii[0], 'down') if radii else '–'} at d 0"
    return title, f"n {c['n']} · p≥{lower} · ε {_radius(c['radius'])}"


def _history_strips(history: list[dict]) -> tuple[dict | None, list[dict]]:
    """Each requirement key's statuses over the last HISTORY_RUNS runs whose history lines carry ``statuses``, oldest
    first; None where no line carries them (the column is then left out)."""
    runs = [h for h in history if isinstance(h.get("statuses"), dict)][-HISTORY_RUNS:]
    if not runs:
        return None, []
    keys = set().union(*(h["statuses"] for h in runs))
    strips = {k: _strip([h["statuses"].get(k) for h in runs]) for k in keys}
    strips[None] = _strip([None] * len(runs))  # a requirement none of those runs had
    return strips, runs


def _test_data(doc: dict) -> dict | None:
    """results.json's ``test_data`` as the report shows it (sources with short digests, meta counts, image sizes), or
    None where the document has none."""
    td = doc.get("test_data")
    if not isinstance(td, dict):
        return None
    sources = [{"path": s.get("path"), "sha": _short(s.get("sha256")), "format": s.get("format"), "rows": s.get("rows")}
               for s in td.get("sources") or [] if isinstance(s, dict)]
    meta = {str(col): sorted(((str(v), n) for v, n in values.items()), key=lambda t: (-t[1] if isinstance(t[1], int) else 0, t[0]))
            for col, values in (td.get("meta") or {}).items() if isinstance(values, dict)}
    sizes = sorted(((str(k), v) for k, v in (td.get("image_sizes") or {}).items()), key=lambda t: t[0])
    return {"cases": td.get("cases"), "sources": sources, "meta": meta, "sizes": sizes}


def build_context(doc: dict, title: str = "certkit audit report", baseline: dict | None = None, history: list | None = None) -> dict:
    """What the template renders, from a results document (read by :func:`certkit.results.records` and ``certificates``),
    its ``baseline`` comparison and the run ``history``: the matrix, tables per test and settings (worst rows first),
    frontier cards (report mode only, at most MAX_CASE_CHARTS), the case index. Every piece of text from the document
    is escaped."""
    results = records(doc)
    cases = doc.get("cases", {})
    run, summary = doc.get("run", {}), doc.get("summary", {})
    changes = (baseline or {}).get("changes", {})
    with_change = baseline is not None
    strips, strip_runs = _history_strips(history or [])
    by_group: dict[str, dict] = defaultdict(lambda: {"tables": defaultdict(list), "errors": [], "counts": Counter()})
    cards: dict[tuple, list] = defaultdict(list)
    items = []  # one per requirement (a record's certificate, or a record without one): the matrix's marks
    for r in results:
        name = _group_name(r["nodeid"])
        group = by_group[name]
        group["counts"][r["status"]] += 1
        certs = certificates(r)
        if r["status"] == ERROR or not certs:
            group["errors"].append(r)
        for index, c in enumerate(certs):
            key = f"{r['nodeid']}#{index}" if index else r["nodeid"]
            settings = _settings_key(c)
            group["tables"][settings].append((STATUS_ORDER.index(c["status"]) if c["status"] in STATUS_ORDER else 9,
                                                      r["nodeid"], c, changes.get(r["nodeid"]), key))
            if c.get("mode") == "frontier" and c.get("frontier"):
                cards[(c.get("case_hash") or c["case_id"], name)].append({**c, "nodeid": r["nodeid"]})
            items.append({"key": key, "group": name, "cert": c, "record": r, "status": c["status"], "settings": settings,
                          "row": str(c.get("case_hash") or c["case_id"]), "label": c["case_id"]})
        if not certs:
            label = r["nodeid"].split("[", 1)[1].rstrip("]") if "[" in r["nodeid"] else r["nodeid"].rsplit("::", 1)[-1]
            items.append({"key": r["nodeid"], "group": name, "cert": None, "record": r, "status": r["status"],
                          "row": "id:" + label, "label": label})
    seen: dict[str, tuple] = {}  # a case's label and thumbnail, looked up once per case
    for i in items:
        if i["row"] not in seen:
            info = cases.get(i["row"]) if isinstance(cases.get(i["row"]), dict) else {}
            thumb = i["row"][:12] if _HEX.match(i["row"][:12]) and _PNG_URI.match(str(info.get("thumbnail") or "")) else None
            seen[i["row"]] = (info.get("id", i["label"]), thumb)
        i["label"], i["thumb"] = seen[i["row"]]
    matrix = _matrix(items)
    ids = {}
    for n, i in enumerate(items):
        if i["key"] in matrix["linked"]:
            i["id"] = ids[i["key"]] = f"r{n}"
    matrix["rows"] = _matrix_html(matrix)
    groups = []
    for name, g in sorted(by_group.items()):
        tables = []
        for key, rows in sorted(g["tables"].items(), key=lambda kv: str(kv[0])):
            rows.sort(key=lambda t: (t[0], t[1]))
            tables.append({"caption": _settings_caption(key), "outcome": str(dict(key)["outcome"]), "count": len(rows),
                           **_table(rows, with_change, ids, strips)})
        counts = {s: g["counts"][s] for s in STATUS_ORDER}
        total = sum(g["counts"].values())
        errors = [{**r, "id": ids.get(r["nodeid"]) if not certificates(r) else None} for r in g["errors"]]
        groups.append({"name": name, "tables": tables, "errors": errors, "counts": counts, "total": total,
                       "open": counts[CERTIFIED] < total})
    case_cards = []
    for (key, group), certs in cards.items():
        info = cases.get(key, {"id": certs[0]["case_id"], "prompt": None, "thumbnail": None})
        worst = min((STATUS_ORDER.index(c["status"]) for c in certs if c["status"] in STATUS_ORDER), default=3)
        case_cards.append({"key": str(key)[:12], "info": info, "certs": certs, "worst": STATUS_ORDER[worst], "test": group,
                           "models": sorted({_short(c.get("model_fingerprint")) for c in certs})})
    case_cards.sort(key=lambda c: (STATUS_ORDER.index(c["worst"]), str(c["info"].get("id")), c["test"]))
    charted = case_cards[:MAX_CASE_CHARTS]
    for card in charted:
        card["chart"] = Markup(case_chart(card["certs"]))
    frontier_certs = [c for r in results for c in certificates(r) if c.get("mode") == "frontier" and c.get("frontier")]
    calibrations = {}
    for r in results:
        for c in certificates(r):
            cal = c.get("oracle_calibration")
            if isinstance(cal, dict):
                calibrations.setdefault((_calibration_key(c), c.get("alpha")),
                                        (cal.get("oracle") or c.get("oracle_fingerprint"), cal, c.get("alpha")))
    script, script_source = _script()
    gate = summary.get("gate")
    gate_word = "PASSED" if gate == "passed" else ("INCOMPLETE" if gate == "incomplete" else "FAILED")
    reason = str(summary.get("gate_reason") or "")
    verdict = reason.split(": ", 1)[1] if reason.upper().startswith(gate_word + ": ") else reason
    run_id = run.get("run_id") or str(run.get("started") or "")
    outcomes = sorted({t["outcome"] for g in groups for t in g["tables"]})
    thumbs = {card["key"]: card["info"]["thumbnail"] for card in charted
              if _HEX.match(card["key"]) and _PNG_URI.match(str(card["info"].get("thumbnail") or ""))}
    for row in matrix["ordered"][:MAX_MATRIX_THUMBS]:  # the page stays small: the first rows' thumbnails only
        if row["thumb"]:
            thumbs[row["thumb"]] = cases[row["key"]]["thumbnail"]
    return {
        "title": title,
        "doc": doc,
        "run": run,
        "run_id": run_id,
        "summary": summary,
        "gate_word": gate_word,
        "verdict": verdict,
        "print_header": _css_string(f"certkit audit · run {run_id} · {str(run.get('started') or '')[:10]} · gate {gate_word}"),
        "matrix": matrix,
        "groups": groups,
        "outcomes": outcomes,
        "with_change": with_change,
        "case_cards": charted,
        "cases_not_charted": max(0, len(case_cards) - len(charted)),
        "case_index": chunks([f"<tr><td>{visible(case_id, isolate=False)}<td>{visible(prompt, PROMPT_INDEX_CHARS, isolate=False)}"
                              for case_id, prompt in sorted((str(i.get("id")), i.get("prompt"))
                                                            for i in cases.values() if isinstance(i, dict))]),
        # thumbnails of the matrix's rows and the frontier cards only: the page stays small
        "thumbs": thumbs,
        "accuracy_chart": Markup(accuracy_curves(frontier_certs) or ""),
        "colours": COLOURS,
        "symbols": SYMBOLS,
        "status_codes": list(STATUS_CODE.items()),  # the filter's checkboxes: status word -> its row class
        "counted_statuses": COUNTED,
        "baseline": baseline,
        "baseline_counts": baseline_counts(baseline) if baseline else "",
        "baseline_lists": _baseline_lists(baseline),
        "fingerprints": _fingerprints(baseline),
        "history": history or [],
        "strip_runs": len(strip_runs),
        "trend_chart": Markup(trend_chart(history or []) or ""),
        "trend_runs": trend_runs(history or []),
        "test_data": _test_data(doc),
        "calibrations": [{"oracle": o, "text": calibration_text(cal, alpha)} for o, cal, alpha in calibrations.values()],
        "script": Markup(script),
        "script_source": Markup(script_source),  # base64 and quotes: literal in the CSP
        "fmt": fmt,
        "visible": visible,
        "breakable": breakable,
        "short": _short,
        "limits": {"card": PROMPT_CARD_CHARS, "index": PROMPT_INDEX_CHARS, "error": ERROR_CHARS},
    }


def render_report(doc: dict, **kwargs) -> str:
    """The report for a results document (the dict written to results.json) as an HTML string."""
    env = Environment(loader=PackageLoader("certkit.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("audit.html.j2").render(**build_context(doc, **kwargs))


def write_report(doc: dict, path: str | Path, **kwargs) -> Path:
    """Write the report of ``doc`` to ``path`` atomically (:func:`certkit.results.write_atomically`); returns the path.
    Keywords as :func:`render_report` takes them."""
    return write_atomically(path, render_report(doc, **kwargs))
