"""The HTML audit report: one self-contained file rendered with Jinja2 (autoescape on).

No network, no external file: inline CSS, inline SVG charts, case thumbnails as data URIs (charted cases only),
and one inline script allowed by its SHA-256 hash in the Content-Security-Policy (filters, sorting, print
preparation). With scripts off every section and every row is still there; the filter form stays hidden.

Sections: the gate verdict and its reason, the summary, the baseline comparison (the regression rule with its alpha,
correction and number of compared requirements; the regressions with their p-values; the removed requirements with
their baseline status; the changes within sampling noise) and trend, the promise and its
limits, certified accuracy (report mode), case cards (per case and test, worst first, with the errors), the
requirement tables (per test, one table per settings, captioned from certkit.requirement's table), the case
index (every case's prompt) and the run metadata. Rows are built here as compact HTML, so that 50,000
requirements stay within a few megabytes (BENCHMARKS.md). Numbers in the tables are rounded to four significant
digits away from a favourable reading: p_A lower bounds down, upper bounds and p* up; results.json has them exact.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from ..certificate import CERTIFIED, ERROR, INCONCLUSIVE, NO_REQUIREMENT, NOT_CERTIFIED, from_json_float
from ..gate import COUNTED
from ..requirement import caption, of_certificate
from ..results import certificates, records, write_atomically
from .charts import COLOURS, STATUS_ORDER, accuracy_curves, case_chart, trend_chart
from .text import visible

__all__ = ["render_report", "write_report", "COLOURS", "STATUS_ORDER"]

_case_chart = case_chart  # the names tests and older callers use
MAX_CASE_CHARTS = 80
MAX_ERROR_CARDS = 100
MAX_BASELINE_ITEMS = 200  # per list of the baseline section (regressions, removed, within noise)
CHUNK_ROWS = 500
ROW_PX = 22  # a table row's height on screen, for the space a block holds before it is laid out
PROMPT_CARD_CHARS = 300
PROMPT_INDEX_CHARS = 160
ERROR_CHARS = 1200
_PNG_URI = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+=*$")  # anything else is not embedded
_HEX = re.compile(r"^[0-9a-f]{12}$")
STATUS_CODE = {CERTIFIED: "c", NOT_CERTIFIED: "n", INCONCLUSIVE: "i", ERROR: "e", NO_REQUIREMENT: "x"}


def _fmt(x, digits=4):
    if x is None:
        return "–"
    x = from_json_float(x)
    if isinstance(x, str):
        return x
    if x == math.inf:
        return "∞"
    if x == -math.inf:
        return "none"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _rounded(x, direction: str) -> str:
    """Four significant digits, rounded ``down`` or ``up`` (never the flattering way); exact values stay as they are."""
    x = from_json_float(x)
    if x is None or isinstance(x, str):
        return "–" if x is None else str(x)
    if not math.isfinite(x):
        return "∞" if x > 0 else "none"
    if x == 0 or x == 1 or float(f"{x:.4g}") == x:
        return f"{x:.4g}"
    scale = 10 ** (3 - math.floor(math.log10(abs(x))))
    value = (math.floor if direction == "down" else math.ceil)(x * scale) / scale
    return f"{value:.4g}"


def _settings_key(c: dict) -> tuple:
    """What puts certificates in one table: the settings they were made under (certkit.requirement's table, read back
    from the record) and the oracle's declared error."""
    return (*sorted(of_certificate(c).items()), ("oracle_error", c.get("oracle_error") or 0.0))


def _settings_caption(key: tuple) -> Markup:
    """The table's caption: each setting's phrase (certkit.requirement.caption), each isolated as the untrusted text it
    may hold (an outcome label), then the declared oracle error where there is one."""
    values = dict(key)
    parts = [visible(phrase) for phrase in caption(values)]
    if values["oracle_error"]:
        parts.append(f"declared oracle error {_fmt(values['oracle_error'])}")
    return Markup(" · ").join(parts)


_COLUMNS = ("case", "d", "eps", "p_A lower", "p_A upper", "p*", "n")


def _table(rows: list[tuple], with_change: bool) -> dict:
    """Compact HTML rows for one table. Columns whose value is the same in every row (d, eps) are stated once in
    the caption instead; certified rows carry no class (the page styles them by default). Status comes last."""
    certs = [c for _, _, c, _ in rows]
    frontier = any(c.get("mode") == "frontier" for c in certs)
    constant = {}
    if not frontier:
        for name, field in (("d", "edits"), ("eps", "radius")):
            values = {str(c[field]) for c in certs}
            if len(values) == 1 and len(certs) > 1:
                constant[name] = certs[0][field]
    columns = [c for c in _COLUMNS if c not in constant] + (["vs baseline"] if with_change else []) + ["status"]
    out = []
    for _, _, c, change in rows:
        code = STATUS_CODE.get(c["status"], "x")
        cells = ["<tr>" if code == "c" else f"<tr class={code}>", f"<td>{visible(c['case_id'], isolate=False)}"]
        if frontier:
            radii = c.get("frontier") or ()
            cells.append(f"<td>{'0–' + str(len(radii) - 1) if c.get('mode') == 'frontier' else c['edits']}")
            cells.append("<td>" + (" / ".join(_rounded(r, "down") for r in radii) if c.get("mode") == "frontier" else _radius(c["radius"])))
        else:
            if "d" not in constant:
                cells.append(f"<td>{c['edits']}")
            if "eps" not in constant:
                cells.append(f"<td>{_radius(c['radius'])}")
        cells.append(f"<td>{_rounded(c['p_a_lower'], 'down')}<td>{_rounded(c['p_a_upper'], 'up')}"
                     f"<td>{_rounded(c['p_star'], 'up')}<td>{c['n']}")
        if with_change:
            cells.append(f"<td>{escape(change or '')}")
        cells.append("<td>" if code == "c" else f"<td>{c['status']}")  # "certified" is the style's text for a row without class
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
    return "0" if not from_json_float(r) else _rounded(r, "down")


def _group_name(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]


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
             ("Removed requirements (in the baseline, not in this run)", "removed",
              [{**r, "text": f"was {r['status']} in the baseline"} for r in comparison.get("removed_records", [])]),
             ("Changes within sampling noise (not regressions)", "within-noise",
              [{**r, "text": "; ".join(r["reasons"])} for r in comparison.get("within_noise", [])]),
             ("Changed requirements (another outcome, noise or case: counts not compared, status compared)", "changed",
              [{**r, "text": "; ".join(r["reasons"])} for r in comparison.get("changed", [])])]
    return [(title, id_,
             [{"key": e.get("key", e["nodeid"]), "nodeid": e["nodeid"], "text": e["text"]} for e in entries[:MAX_BASELINE_ITEMS]],
             max(0, len(entries) - MAX_BASELINE_ITEMS)) for title, id_, entries in lists if entries]


def build_context(doc: dict, title: str = "certkit audit report", baseline: dict | None = None, history: list | None = None) -> dict:
    """What the template renders, from a results document (read by :func:`certkit.results.records` and ``certificates``),
    its ``baseline`` comparison and the run ``history``: tables per test and settings (worst rows first), case cards
    (at most MAX_CASE_CHARTS charted), error cards, the case index. Every piece of text from the document is escaped."""
    results = records(doc)
    cases = doc.get("cases", {})
    run, summary = doc.get("run", {}), doc.get("summary", {})
    changes = (baseline or {}).get("changes", {})
    with_change = baseline is not None
    by_group: dict[str, dict] = defaultdict(lambda: {"tables": defaultdict(list), "errors": [], "counts": Counter()})
    cards: dict[tuple, list] = defaultdict(list)
    errors = []
    for r in results:
        group = by_group[_group_name(r["nodeid"])]
        group["counts"][r["status"]] += 1
        certs = certificates(r)
        if r["status"] == ERROR or not certs:
            group["errors"].append(r)
            if r["status"] == ERROR:
                errors.append(r)
        for c in certs:
            group["tables"][_settings_key(c)].append((STATUS_ORDER.index(c["status"]) if c["status"] in STATUS_ORDER else 9,
                                                      r["nodeid"], c, changes.get(r["nodeid"])))
            cards[(c.get("case_hash") or c["case_id"], _group_name(r["nodeid"]))].append({**c, "nodeid": r["nodeid"]})
    groups = []
    for name, g in sorted(by_group.items()):
        tables = []
        for key, rows in sorted(g["tables"].items(), key=lambda kv: str(kv[0])):
            rows.sort(key=lambda t: (t[0], t[1]))
            tables.append({"caption": _settings_caption(key), "outcome": str(dict(key)["outcome"]), "count": len(rows),
                           **_table(rows, with_change)})
        counts = {s: g["counts"][s] for s in STATUS_ORDER}
        total = sum(g["counts"].values())
        groups.append({"name": name, "tables": tables, "errors": g["errors"], "counts": counts, "total": total,
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
    script, script_source = _script()
    gate = summary.get("gate")
    gate_word = "PASSED" if gate == "passed" else ("INCOMPLETE" if gate == "incomplete" else "FAILED")
    run_id = run.get("run_id") or str(run.get("started") or "")
    outcomes = sorted({t["outcome"] for g in groups for t in g["tables"]})
    return {
        "title": title,
        "doc": doc,
        "run": run,
        "run_id": run_id,
        "summary": summary,
        "gate_word": gate_word,
        "print_header": _css_string(f"certkit audit · run {run_id} · {str(run.get('started') or '')[:10]} · gate {gate_word}"),
        "groups": groups,
        "outcomes": outcomes,
        "with_change": with_change,
        "case_cards": charted,
        "cases_not_charted": max(0, len(case_cards) - len(charted)),
        "error_cards": errors[:MAX_ERROR_CARDS],
        "errors_not_carded": max(0, len(errors) - MAX_ERROR_CARDS),
        "case_index": chunks([f"<tr><td>{visible(case_id, isolate=False)}<td>{visible(prompt, PROMPT_INDEX_CHARS, isolate=False)}"
                              for case_id, prompt in sorted((str(i.get("id")), i.get("prompt"))
                                                            for i in cases.values() if isinstance(i, dict))]),
        # thumbnails of the charted cases only (worst first, at most MAX_CASE_CHARTS): the page stays small
        "thumbs": {card["key"]: card["info"]["thumbnail"] for card in charted
                   if _HEX.match(card["key"]) and _PNG_URI.match(str(card["info"].get("thumbnail") or ""))},
        "accuracy_chart": Markup(accuracy_curves(frontier_certs) or ""),
        "colours": COLOURS,
        "status_codes": list(STATUS_CODE.items()),  # the filter's checkboxes: status word -> its row class
        "counted_statuses": COUNTED,
        "baseline": baseline,
        "baseline_lists": _baseline_lists(baseline),
        "history": history or [],
        "trend_chart": Markup(trend_chart(history or []) or ""),
        "script": Markup(script),
        "script_source": Markup(script_source),  # base64 and quotes: literal in the CSP
        "fmt": _fmt,
        "visible": visible,
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
