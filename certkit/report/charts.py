"""The report's charts: inline SVG, drawn from certificate and history records (no script, no external file).

Every number drawn into the SVG is formatted here from floats; every text from a record is escaped.
"""

from __future__ import annotations

import math

from markupsafe import escape

from ..certificate import CERTIFIED, ERROR, INCONCLUSIVE, NOT_CERTIFIED, from_json_float

STATUS_ORDER = (ERROR, NOT_CERTIFIED, INCONCLUSIVE, CERTIFIED)
COLOURS = {CERTIFIED: "#1a7f37", NOT_CERTIFIED: "#cf222e", INCONCLUSIVE: "#bf8700", ERROR: "#6e40c9"}


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


def trend_chart(history: list[dict]) -> str | None:
    """SVG: certified share of requirements (green, left axis, %) and mean certified image l2 radius (blue, dashed,
    right axis, in pixel units of [0, 1] images) over the recorded runs, oldest left, dated at both ends."""
    runs = [h for h in history if h.get("pass_rate") is not None]
    if len(runs) < 2:
        return None
    w, h, left, right, top, bottom = 560, 210, 52, 60, 14, 46
    n = len(runs)
    max_r = max([r.get("mean_radius") or 0 for r in runs] + [1e-9])

    def x(i):
        return left + (w - left - right) * i / (n - 1)

    def y(v):
        return h - bottom - (h - bottom - top) * v

    def date(run):
        return escape(str(run.get("started") or run.get("finished") or "")[:10])

    share = " ".join(f"{x(i):.1f},{y(r['pass_rate']):.1f}" for i, r in enumerate(runs))
    radius = " ".join(f"{x(i):.1f},{y((r.get('mean_radius') or 0) / max_r):.1f}" for i, r in enumerate(runs))
    mid = (h - bottom + top) / 2
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="certified share and mean certified radius across the last {n} runs">'
            f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" class="axis"/>'
            f'<line x1="{left}" y1="{h - bottom}" x2="{left}" y2="{top}" class="axis"/>'
            f'<line x1="{w - right}" y1="{h - bottom}" x2="{w - right}" y2="{top}" class="axis"/>'
            f'<text x="{left - 4}" y="{y(1) + 4}" class="tick" text-anchor="end">100%</text>'
            f'<text x="{left - 4}" y="{y(0.5) + 4}" class="tick" text-anchor="end">50%</text>'
            f'<text x="{left - 4}" y="{y(0) + 4}" class="tick" text-anchor="end">0%</text>'
            f'<text x="{w - right + 4}" y="{y(1) + 4}" class="tick" fill="#0969da">{max_r:.3g}</text>'
            f'<text x="{w - right + 4}" y="{y(0) + 4}" class="tick" fill="#0969da">0</text>'
            f'<text x="14" y="{mid}" class="lbl" fill="#1a7f37" transform="rotate(-90 14 {mid})">certified share of requirements (%)</text>'
            f'<text x="{w - 12}" y="{mid}" class="lbl" fill="#0969da" transform="rotate(90 {w - 12} {mid})">'
            'mean certified radius (l2)</text>'
            f'<text x="{left}" y="{h - bottom + 14}" class="tick">{date(runs[0])}</text>'
            f'<text x="{w - right}" y="{h - bottom + 14}" class="tick" text-anchor="end">{date(runs[-1])}</text>'
            f'<text x="{(left + w - right) / 2}" y="{h - 8}" class="lbl">run (the last {n}, oldest left)</text>'
            f'<polyline points="{share}" fill="none" stroke="#1a7f37" stroke-width="2"><title>certified share (%)</title></polyline>'
            f'<polyline points="{radius}" fill="none" stroke="#0969da" stroke-width="2" stroke-dasharray="4 3">'
            f'<title>mean certified image l2 radius</title></polyline></svg>')
