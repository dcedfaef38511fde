"""The report's charts: inline SVG, drawn from certificate and history records (no script, no external file).

Every number drawn into the SVG is formatted here from floats; every text from a record is escaped.
"""

from __future__ import annotations

import math

from markupsafe import escape

from ..certificate import CERTIFIED, ERROR, INCONCLUSIVE, NO_REQUIREMENT, NOT_CERTIFIED, from_json_float

STATUS_ORDER = (ERROR, NOT_CERTIFIED, INCONCLUSIVE, CERTIFIED)
COLOURS = {CERTIFIED: "#1a7f37", NOT_CERTIFIED: "#cf222e", INCONCLUSIVE: "#bf8700", ERROR: "#6e40c9"}
#: each status's symbol, shown beside its colour (print, colour-blind readers)
SYMBOLS = {CERTIFIED: "✓", NOT_CERTIFIED: "✗", INCONCLUSIVE: "?", ERROR: "!", NO_REQUIREMENT: "–"}


def case_chart(certs: list[dict]) -> str:
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

    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             'aria-label="requirements in the edits-radius plane">',
             f'<line x1="{pad}" y1="{y(0)}" x2="{w - 8}" y2="{y(0)}" class="axis"/>'
             f'<line x1="{pad}" y1="{y(0)}" x2="{pad}" y2="6" class="axis"/>',
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
                     f'{escape(str(c.get("outcome", "")))} {escape(str(c["status"]))}: '
                     f'd={c["edits"]}, eps={c["radius"]:g}, tau={c["threshold"]:g}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def accuracy_curves(frontier_certs: list[dict]) -> str | None:
    """SVG: certified accuracy (share of report-mode cases with max radius >= r) against r, one line per d."""
    if not frontier_certs:
        return None
    w, h, pad = 420, 220, 36
    max_d = min(4, max(len(c["frontier"]) for c in frontier_certs) - 1)
    finite = [from_json_float(r) for c in frontier_certs for r in c["frontier"]
              if math.isfinite(from_json_float(r)) and from_json_float(r) > 0]
    max_r = max(finite + [0.1]) * 1.05
    palette = ["#0969da", "#1a7f37", "#bf8700", "#cf222e", "#6e40c9"]
    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             'aria-label="certified accuracy against radius">',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" class="axis"/>'
             f'<line x1="{pad}" y1="{h - pad}" x2="{pad}" y2="10" class="axis"/>',
             f'<text x="{w / 2}" y="{h - 6}" class="lbl">image l2 radius</text>'
             f'<text x="{pad - 4}" y="14" class="tick" text-anchor="end">1</text>',
             f'<text x="{pad - 4}" y="{h - pad + 4}" class="tick" text-anchor="end">0</text>'
             f'<text x="{w - 10}" y="{h - pad + 14}" class="tick" text-anchor="end">{max_r:.3g}</text>']
    n = len(frontier_certs)
    for d in range(max_d + 1):
        pts = []
        for i in range(41):
            r = max_r * i / 40
            share = sum(1 for c in frontier_certs if len(c["frontier"]) > d and from_json_float(c["frontier"][d]) >= r) / n
            pts.append(f"{pad + (w - pad - 10) * i / 40:.1f},{h - pad - (h - pad - 10) * share:.1f}")
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{palette[d % 5]}" stroke-width="2">'
                     f'<title>d = {d}</title></polyline>')
        parts.append(f'<text x="{w - 60}" y="{20 + 13 * d}" class="tick" fill="{palette[d % 5]}">d = {d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _gate_word(entry: dict) -> str:
    gate = str(entry.get("gate") or "").split(":", 1)[0].strip().upper()
    return gate if gate in ("PASSED", "FAILED", "INCOMPLETE") else "not recorded"


def _when(entry: dict) -> str:
    return str(entry.get("finished") or entry.get("started") or "")[:16].replace("T", " ")


def trend_runs(history: list[dict]) -> list[dict]:
    """The runs the trend chart draws (history lines with a pass rate, oldest first), each with its index (1 = oldest
    drawn), run id, date and time, short model fingerprints, whether its models differ from the latest run's, its
    gate verdict (``not recorded`` for an older line without one) and its counts."""
    runs = [h for h in history if h.get("pass_rate") is not None]
    latest = sorted(map(str, runs[-1].get("models") or [])) if runs else []
    out = []
    for n, h in enumerate(runs, 1):
        models = sorted(map(str, h.get("models") or []))
        out.append({"index": n, "run_id": str(h.get("run_id") or ""), "when": _when(h), "models": ", ".join(m[:12] for m in models),
                    "other_model": bool(models) and models != latest, "gate": _gate_word(h), "pass_rate": h["pass_rate"],
                    "mean_radius": h.get("mean_radius") or 0, "certified": h.get("certified"), "requirements": h.get("requirements")})
    return out


GATE_COLOURS = {"PASSED": COLOURS[CERTIFIED], "FAILED": COLOURS[NOT_CERTIFIED], "INCOMPLETE": COLOURS[ERROR], "not recorded": "#8c959f"}
LABELLED_RUNS = 3  # the last runs labelled with their index in the chart (the table under it names them)


def trend_chart(history: list[dict]) -> str | None:
    """SVG: certified share of requirements (left axis, %) and mean certified image l2 radius (dashed, right axis, in
    pixel units of [0, 1] images) over the recorded runs, oldest left, x = run index with date and time at both ends.
    One marker per run: its colour the run's gate verdict, a square where the run's models differ from the latest
    run's (a circle otherwise); its title (hover) names run id, time, model and gate; the last LABELLED_RUNS runs carry
    their index as a visible label; a legend explains marks and lines."""
    runs = trend_runs(history)
    if len(runs) < 2:
        return None
    w, h, left, right, top, bottom = 640, 250, 48, 52, 16, 84
    n = len(runs)
    max_r = max([r["mean_radius"] for r in runs] + [1e-9])

    def x(i):
        return left + (w - left - right) * i / (n - 1)

    def y(v):
        return top + (h - bottom - top) * (1 - v)

    base = h - bottom
    share = " ".join(f"{x(i):.1f},{y(r['pass_rate']):.1f}" for i, r in enumerate(runs))
    radius = " ".join(f"{x(i):.1f},{y(r['mean_radius'] / max_r):.1f}" for i, r in enumerate(runs))
    mid = (base + top) / 2
    parts = [f'<svg class="chart trend" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             f'aria-label="certified share and mean certified radius across the last {n} runs">',
             f'<line x1="{left}" y1="{base}" x2="{w - right}" y2="{base}" class="axis"/>'
             f'<line x1="{left}" y1="{base}" x2="{left}" y2="{top}" class="axis"/>'
             f'<line x1="{w - right}" y1="{base}" x2="{w - right}" y2="{top}" class="axis"/>']
    for v in (0, 0.5, 1):
        parts.append(f'<text x="{left - 4}" y="{y(v) + 3.5:.1f}" class="tick" text-anchor="end">{100 * v:.0f}%</text>')
    parts.append(f'<text x="{w - right + 4}" y="{y(1) + 3.5:.1f}" class="tick" fill="#0969da">{max_r:.3g}</text>'
                 f'<text x="{w - right + 4}" y="{y(0) + 3.5:.1f}" class="tick" fill="#0969da">0</text>'
                 f'<text x="12" y="{mid}" class="lbl" transform="rotate(-90 12 {mid})">certified (%)</text>'
                 f'<text x="{w - 10}" y="{mid}" class="lbl" fill="#0969da" transform="rotate(90 {w - 10} {mid})">mean radius (l2)</text>')
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):
        parts.append(f'<text x="{x(i):.1f}" y="{base + 12}" class="tick" text-anchor="middle">{runs[i]["index"]}</text>')
    if (n - 1) % step:
        parts.append(f'<text x="{x(n - 1):.1f}" y="{base + 12}" class="tick" text-anchor="middle">{runs[-1]["index"]}</text>')
    parts.append(f'<text x="{left}" y="{base + 24}" class="tick">{escape(runs[0]["when"])}</text>'
                 f'<text x="{w - right}" y="{base + 24}" class="tick" text-anchor="end">{escape(runs[-1]["when"])}</text>'
                 f'<text x="{(left + w - right) / 2}" y="{base + 24}" class="lbl">run (oldest left)</text>')
    parts.append(f'<polyline points="{share}" fill="none" stroke="#57606a" stroke-width="1.5"><title>certified share (%)</title></polyline>'
                 f'<polyline points="{radius}" fill="none" stroke="#0969da" stroke-width="1.5" stroke-dasharray="4 3">'
                 '<title>mean certified image l2 radius</title></polyline>')
    for i, r in enumerate(runs):
        cx, cy, col = x(i), y(r["pass_rate"]), GATE_COLOURS[r["gate"]]
        title = (f"run {r['index']}{' ' + r['run_id'] if r['run_id'] else ''} · {r['when']} · model {r['models'] or 'not recorded'}"
                 f"{' (another model than the latest run)' if r['other_model'] else ''} · gate {r['gate']} · "
                 f"certified {r['certified']} of {r['requirements']} ({100 * r['pass_rate']:.1f}%)")
        shape = (f'<rect x="{cx - 4.5:.1f}" y="{cy - 4.5:.1f}" width="9" height="9" fill="{col}" stroke="#1f2328" stroke-width="1">'
                 if r["other_model"] else f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="{col}" stroke="#fff" stroke-width="1">')
        parts.append(shape + f"<title>{escape(title)}</title></{'rect' if r['other_model'] else 'circle'}>")
        if i >= n - LABELLED_RUNS:
            label_y = cy - 8 if cy - 8 > top + 10 else cy + 16  # below a marker near the top, clear of the axis labels
            parts.append(f'<text x="{cx:.1f}" y="{label_y:.1f}" class="tick" text-anchor="middle">{r["index"]}</text>')
    ly = h - 30
    legend = [("circle", GATE_COLOURS["PASSED"], "gate passed"), ("circle", GATE_COLOURS["FAILED"], "gate failed"),
              ("circle", GATE_COLOURS["INCOMPLETE"], "incomplete"), ("circle", GATE_COLOURS["not recorded"], "gate not recorded"),
              ("rect", "#fff", "another model than the latest run")]
    lx = left
    for shape, col, text in legend:
        if shape == "circle":
            parts.append(f'<circle cx="{lx + 4}" cy="{ly - 3.5}" r="4" fill="{col}"/>')
        else:
            parts.append(f'<rect x="{lx}" y="{ly - 7.5}" width="8" height="8" fill="{col}" stroke="#1f2328"/>')
        parts.append(f'<text x="{lx + 12}" y="{ly}" class="tick">{text}</text>')
        lx += 24 + 5.6 * len(text)  # about the width of 10 px text
    parts.append(f'<line x1="{left}" y1="{ly + 14}" x2="{left + 20}" y2="{ly + 14}" stroke="#57606a" stroke-width="1.5"/>'
                 f'<text x="{left + 24}" y="{ly + 17.5}" class="tick">certified share (left axis)</text>'
                 f'<line x1="{left + 170}" y1="{ly + 14}" x2="{left + 190}" y2="{ly + 14}" stroke="#0969da" stroke-width="1.5" '
                 f'stroke-dasharray="4 3"/><text x="{left + 194}" y="{ly + 17.5}" class="tick">mean certified radius (right axis)</text>')
    parts.append("</svg>")
    return "".join(parts)
