"""The HTML audit report: one self-contained file rendered with Jinja2 (autoescape on).

No network fetches: inline CSS, inline SVG charts, case thumbnails as data URIs (each case once). Sections:
verdict summary, the threat model and guarantee in plain words, per-case charts of the requirements in the
(d, eps) plane (with the certified frontier in report mode), certified-accuracy curves (report mode), the
requirement table grouped by test (groups with failures open), and the run metadata.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import escape

from ..certificate import from_json_float

__all__ = ["render_report", "write_report"]

STATUS_ORDER = ("error", "not certified", "inconclusive", "certified")
COLOURS = {"certified": "#1a7f37", "not certified": "#cf222e", "inconclusive": "#bf8700", "error": "#6e40c9"}
MAX_CASE_CHARTS = 100
_PNG_URI = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+=*$")  # anything else is not embedded
_HEX = re.compile(r"^[0-9a-f]{12}$")


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


def _case_chart(certs: list[dict]) -> str:
    """SVG: requirements as points in the (d, eps) plane, coloured by status; report-mode frontiers as steps."""
    w, h, pad = 260, 150, 30
    max_d = max([c["edits"] for c in certs] + [len(c.get("frontier") or ()) - 1 for c in certs] + [1])
    radii = [c["radius"] for c in certs if c.get("mode") == "certify"]
    for c in certs:
        radii += [r for r in map(from_json_float, c.get("frontier") or ()) if math.isfinite(r)]
    max_r = max(radii + [0.1]) * 1.15

    def x(d):
        return pad + (w - pad - 8) * d / max_d

    def y(r):
        return h - pad + 4 - (h - pad - 4) * min(r, max_r) / max_r

    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="requirements in the edits-radius plane">',
             f'<line x1="{pad}" y1="{y(0)}" x2="{w - 8}" y2="{y(0)}" class="axis"/><line x1="{pad}" y1="{y(0)}" x2="{pad}" y2="6" class="axis"/>',
             f'<text x="{w / 2}" y="{h - 4}" class="lbl">token edits d</text>',
             f'<text x="10" y="{h / 2}" class="lbl" transform="rotate(-90 10 {h / 2})">image l2 radius</text>',
             f'<text x="{pad - 4}" y="{y(0) + 4}" class="tick" text-anchor="end">0</text>',
             f'<text x="{pad - 4}" y="{y(max_r / 1.15) + 4}" class="tick" text-anchor="end">{max_r / 1.15:.3g}</text>']
    for d in range(max_d + 1):
        parts.append(f'<text x="{x(d)}" y="{y(0) + 13}" class="tick" text-anchor="middle">{d}</text>')
    for c in certs:
        fr = [from_json_float(r) for r in (c.get("frontier") or ())]
        # the certified region: a staircase over d = 0 .. last certified d, closed along the d axis
        steps = []
        for d, r in enumerate(fr):
            if not math.isfinite(r) or r < 0:
                break
            steps.append((d, r))
        if steps:
            pts = []
            for i, (d, r) in enumerate(steps):
                if i:
                    pts.append(f"{x(d)},{y(steps[i - 1][1])}")
                pts.append(f"{x(d)},{y(r)}")
            last = steps[-1][0]
            pts += [f"{x(last)},{y(0)}", f"{x(0)},{y(0)}"]
            parts.append(f'<polygon points="{" ".join(pts)}" class="region"/>')
    # requirements at the same (d, eps) overlap: the worst status is drawn last, on top
    points = sorted((c for c in certs if c.get("mode") == "certify"),
                    key=lambda c: -(STATUS_ORDER.index(c["status"]) if c["status"] in STATUS_ORDER else len(STATUS_ORDER)))
    for c in points:
        col = COLOURS.get(c["status"], "#888")
        parts.append(f'<circle cx="{x(c["edits"]):.1f}" cy="{y(c["radius"]):.1f}" r="4.5" fill="{col}"><title>'
                     f'{escape(str(c.get("outcome", "")))} {escape(str(c["status"]))}: d={c["edits"]}, eps={c["radius"]:g}, tau={c["threshold"]:g}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _accuracy_curves(frontier_certs: list[dict]) -> str | None:
    """SVG: certified accuracy (share of report-mode cases with max radius >= r) against r, one line per d."""
    if not frontier_certs:
        return None
    w, h, pad = 420, 220, 36
    max_d = min(4, max(len(c["frontier"]) for c in frontier_certs) - 1)
    finite = [from_json_float(r) for c in frontier_certs for r in c["frontier"] if math.isfinite(from_json_float(r)) and from_json_float(r) > 0]
    max_r = max(finite + [0.1]) * 1.05
    palette = ["#0969da", "#1a7f37", "#bf8700", "#cf222e", "#6e40c9"]
    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="certified accuracy against radius">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" class="axis"/><line x1="{pad}" y1="{h - pad}" x2="{pad}" y2="10" class="axis"/>',
             f'<text x="{w / 2}" y="{h - 6}" class="lbl">image l2 radius</text><text x="{pad - 4}" y="14" class="tick" text-anchor="end">1</text>',
             f'<text x="{pad - 4}" y="{h - pad + 4}" class="tick" text-anchor="end">0</text><text x="{w - 10}" y="{h - pad + 14}" class="tick" text-anchor="end">{max_r:.3g}</text>']
    n = len(frontier_certs)
    for d in range(max_d + 1):
        pts = []
        for i in range(41):
            r = max_r * i / 40
            share = sum(1 for c in frontier_certs if len(c["frontier"]) > d and from_json_float(c["frontier"][d]) >= r) / n
            pts.append(f"{pad + (w - pad - 10) * i / 40:.1f},{h - pad - (h - pad - 10) * share:.1f}")
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{palette[d % 5]}" stroke-width="2"><title>d = {d}</title></polyline>')
        parts.append(f'<text x="{w - 60}" y="{20 + 13 * d}" class="tick" fill="{palette[d % 5]}">d = {d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _trend_chart(history: list[dict]) -> str | None:
    """SVG: certified fraction (green) and mean certified radius (blue, own scale) over the recorded runs."""
    runs = [h for h in history if h.get("pass_rate") is not None]
    if len(runs) < 2:
        return None
    w, h, pad = 520, 180, 34
    n = len(runs)
    max_r = max([h.get("mean_radius") or 0 for h in runs] + [1e-9])

    def x(i):
        return pad + (w - 2 * pad) * i / (n - 1)

    def y(v):
        return h - pad - (h - pad - 12) * v

    share = " ".join(f"{x(i):.1f},{y(r['pass_rate']):.1f}" for i, r in enumerate(runs))
    radius = " ".join(f"{x(i):.1f},{y((r.get('mean_radius') or 0) / max_r):.1f}" for i, r in enumerate(runs))
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="trend across runs">'
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" class="axis"/>'
            f'<line x1="{pad}" y1="{h - pad}" x2="{pad}" y2="12" class="axis"/>'
            f'<text x="{pad - 4}" y="16" class="tick" text-anchor="end">100%</text><text x="{pad - 4}" y="{h - pad + 4}" class="tick" text-anchor="end">0</text>'
            f'<text x="{w - pad + 4}" y="16" class="tick" fill="#0969da">{max_r:.3g}</text>'
            f'<text x="{w / 2}" y="{h - 8}" class="lbl">the last {n} runs, oldest left</text>'
            f'<polyline points="{share}" fill="none" stroke="#1a7f37" stroke-width="2"><title>certified fraction</title></polyline>'
            f'<polyline points="{radius}" fill="none" stroke="#0969da" stroke-width="2" stroke-dasharray="4 3"><title>mean certified radius</title></polyline>'
            f'<text x="{pad + 6}" y="{h - pad - 6}" class="tick" fill="#1a7f37">certified fraction</text>'
            f'<text x="{pad + 120}" y="{h - pad - 6}" class="tick" fill="#0969da">mean certified radius (dashed)</text></svg>')


def _group_name(nodeid: str) -> str:
    return nodeid.split("[", 1)[0]


def build_context(doc: dict, title: str = "certkit audit report", baseline: dict | None = None, history: list | None = None) -> dict:
    results = doc.get("results", [])
    cases = doc.get("cases", {})
    changes = (baseline or {}).get("changes", {})
    groups: dict[str, list] = defaultdict(list)
    per_case: dict[str, list] = defaultdict(list)
    for r in results:
        row = {"nodeid": r["nodeid"], "status": r["status"], "error": r.get("error"), "certs": r.get("certificates", []),
               "change": changes.get(r["nodeid"])}
        groups[_group_name(r["nodeid"])].append(row)
        for c in row["certs"]:
            per_case[c.get("case_hash") or c["case_id"]].append({**c, "nodeid": r["nodeid"]})
    group_list = []
    for name, rows in sorted(groups.items()):
        counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUS_ORDER}
        rows.sort(key=lambda r: (STATUS_ORDER.index(r["status"]) if r["status"] in STATUS_ORDER else 9, r["nodeid"]))
        group_list.append({"name": name, "rows": rows, "counts": counts, "open": counts["certified"] < len(rows)})
    case_cards = []
    for key, certs in per_case.items():
        info = cases.get(key, {"id": certs[0]["case_id"], "prompt": None, "thumbnail": None})
        worst = min((STATUS_ORDER.index(c["status"]) for c in certs), default=3)
        case_cards.append({"key": key[:12], "info": info, "certs": certs, "worst": STATUS_ORDER[worst]})
    case_cards.sort(key=lambda c: (STATUS_ORDER.index(c["worst"]), c["info"]["id"]))
    charted = case_cards[:MAX_CASE_CHARTS]
    for card in charted:
        card["chart"] = _case_chart(card["certs"])
    frontier_certs = [c for r in results for c in r.get("certificates", []) if c.get("mode") == "frontier" and c.get("frontier")]
    return {
        "title": title,
        "doc": doc,
        "run": doc.get("run", {}),
        "summary": doc.get("summary", {}),
        "groups": group_list,
        "case_cards": charted,
        "charted_keys": {card["key"] for card in charted},
        "prompts": {key: info.get("prompt") for key, info in cases.items() if isinstance(info, dict)},
        "cases_not_charted": max(0, len(case_cards) - len(charted)),
        # thumbnails of the charted cases only (worst first, at most MAX_CASE_CHARTS): the page stays small
        "thumbs": {card["key"]: card["info"]["thumbnail"] for card in charted
                   if _HEX.match(card["key"]) and _PNG_URI.match(str(card["info"].get("thumbnail") or ""))},
        "accuracy_chart": _accuracy_curves(frontier_certs),
        "colours": COLOURS,
        "baseline": baseline,
        "history": history or [],
        "trend_chart": _trend_chart(history or []),
        "fmt": _fmt,
    }


def render_report(doc: dict, **kwargs) -> str:
    """The report for a results document (the dict written to results.json) as an HTML string."""
    env = Environment(loader=PackageLoader("certkit.report", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("audit.html.j2").render(**build_context(doc, **kwargs))


def write_report(doc: dict, path: str | Path, **kwargs) -> Path:
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(doc, **kwargs), encoding="utf-8")
    os.replace(tmp, path)
    return path
