"""Regression tracking: compare a run with a baseline, keep a history of runs, merge sharded results.

A *baseline* is a results document (``certkit.results/1``) that a team commits. A requirement
**regresses** when it was certified in the baseline and no longer is, or when its p_A lower bound
or its largest certified image radius (at the requirement's token edits, implied by that bound)
dropped by more than a tolerance. New and removed requirements are listed but do not fail a run.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from pathlib import Path

from .certificate import from_json_float

__all__ = [
    "RESULTS_SCHEMA", "ResultsError", "write_results", "load_results", "compare", "implied_radius", "history_entry", "append_history",
    "read_history", "merge",
]

RESULTS_SCHEMA = "certkit.results/1"
P_TOLERANCE = 0.02
RADIUS_TOLERANCE = 0.05


class ResultsError(ValueError):
    """A results or baseline file that cannot be used; the message names the file and the problem."""


def write_results(path: str | Path, document: dict) -> None:
    """Write a results document atomically (a temporary file, then a rename)."""
    import os

    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of this writer's own, so concurrent runs writing the same results never share one
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a results file is for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_results(path: str | Path, what: str = "results") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{what} file {str(path)!r} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{what} file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA or not isinstance(doc.get("results"), list):
        raise ResultsError(f"{what} file {str(path)!r} is not a certkit results file (schema {RESULTS_SCHEMA})")
    _check_body(doc, f"{what} file {str(path)!r}")
    return doc


_STATUSES = {"certified", "not certified", "inconclusive", "error", "no requirement"}
_NUMBERS = ("p_a_lower", "threshold", "n")


def _check_body(doc: dict, where: str) -> None:
    """Every record and certificate has what comparing, merging and reporting read, with the right types: a file
    with the right schema tag and a broken body is refused here, before a run, not at its end."""
    if not isinstance(doc.get("summary", {}), dict) or not isinstance(doc.get("run", {}), dict):
        raise ResultsError(f"{where}: 'summary' and 'run' must be objects")
    for i, record in enumerate(doc["results"]):
        at = f"{where}: results[{i}]"
        if not isinstance(record, dict) or not isinstance(record.get("nodeid"), str):
            raise ResultsError(f"{at} must be an object with a string 'nodeid'")
        if record.get("status") is not None and record.get("status") not in _STATUSES:
            raise ResultsError(f"{at} ({record['nodeid']}): unknown status {record.get('status')!r}")
        certs = record.get("certificates", [])
        if not isinstance(certs, list):
            raise ResultsError(f"{at} ({record['nodeid']}): 'certificates' must be a list")
        for j, cert in enumerate(certs):
            where_cert = f"{at}.certificates[{j}] ({record['nodeid']})"
            if not isinstance(cert, dict) or cert.get("status") not in _STATUSES:
                raise ResultsError(f"{where_cert}: must be an object with a known 'status'")
            for key in _NUMBERS:
                value = from_json_float(cert.get(key)) if isinstance(cert.get(key), str) else cert.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ResultsError(f"{where_cert}: {key!r} must be a number, got {cert.get(key)!r}")
            try:
                implied_radius(cert)
            except (KeyError, TypeError, ValueError) as exc:
                raise ResultsError(f"{where_cert}: its kernels or bounds cannot be read ({type(exc).__name__}: {exc})") from None


def implied_radius(cert: dict) -> float:
    """Largest image radius certified at the certificate's edits by its p_A lower bound (-inf: none)."""
    from . import bounds
    from .noise import Gaussian, Mask, UniformReplace

    if cert.get("mode") == "frontier" and cert.get("frontier"):
        return float(from_json_float(cert["frontier"][0]))
    image = cert.get("image_kernel") or {}
    if not image:
        return -math.inf
    tk = cert.get("text_kernel") or {}
    text = UniformReplace(tk["beta"], tk["vocab_size"]) if tk.get("kind") == "uniform_replace" else (Mask(tk["beta"]) if tk else None)
    edits = int(cert.get("edits", 0)) if text is not None else 0
    return float(bounds.max_radius(float(cert["p_a_lower"]), Gaussian(image["sigma"]), text, edits, float(cert["threshold"])))


def _key(record: dict, cert: dict, index: int) -> str:
    return f"{record['nodeid']}#{index}" if index else record["nodeid"]


def _index(doc: dict) -> dict:
    out = {}
    for record in doc["results"]:
        certs = record.get("certificates") or [None]
        for i, cert in enumerate(certs):
            out[_key(record, cert, i)] = (record, cert)
    return out


def compare(baseline: dict, current: dict, p_tolerance: float = P_TOLERANCE, radius_tolerance: float = RADIUS_TOLERANCE) -> dict:
    """Requirement-by-requirement comparison. Returns ``{"regressions": [...], "improvements": [...], "new": [...],
    "removed": [...], "changes": {nodeid: text}}``; ``changes`` feeds the report's "vs baseline" column."""
    old, new = _index(baseline), _index(current)
    out = {"regressions": [], "improvements": [], "new": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
           "changes": {}, "p_tolerance": p_tolerance, "radius_tolerance": radius_tolerance}
    for key in sorted(set(old) & set(new)):
        (orec, ocert), (nrec, ncert) = old[key], new[key]
        ostatus = ocert["status"] if ocert else orec.get("status")
        nstatus = ncert["status"] if ncert else nrec.get("status")
        nodeid = nrec["nodeid"]
        reasons, better = [], []
        if ostatus == "certified" and nstatus != "certified":
            reasons.append(f"was certified, now {nstatus}")
        elif ostatus != "certified" and nstatus == "certified":
            better.append(f"now certified (was {ostatus})")
        if ocert and ncert:
            dp = ncert["p_a_lower"] - ocert["p_a_lower"]
            if dp < -p_tolerance:
                reasons.append(f"p_A lower bound {ocert['p_a_lower']:.4f} -> {ncert['p_a_lower']:.4f}")
            r_old, r_new = implied_radius(ocert), implied_radius(ncert)
            if math.isfinite(r_old) and r_old > 0 and (r_new < r_old - radius_tolerance):
                reasons.append(f"max radius {r_old:.4f} -> {'none' if r_new == -math.inf else f'{r_new:.4f}'}")
        if reasons:
            out["regressions"].append({"nodeid": nodeid, "reasons": reasons})
            out["changes"][nodeid] = "REGRESSED: " + "; ".join(reasons)
        elif better:
            out["improvements"].append({"nodeid": nodeid, "reasons": better})
            out["changes"][nodeid] = "; ".join(better)
        else:
            out["changes"].setdefault(nodeid, "unchanged")
    for key in out["new"]:
        out["changes"][new[key][0]["nodeid"]] = "new"
    return out


def history_entry(doc: dict) -> dict:
    """A compact summary of one run for ``history.jsonl``."""
    radii = []
    for record in doc["results"]:
        for cert in record.get("certificates") or []:
            r = implied_radius(cert)
            radii.append(r if math.isfinite(r) and r > 0 else 0.0)
    s, run = doc.get("summary", {}), doc.get("run", {})
    return {"finished": run.get("finished") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": (run.get("git") or {}).get("commit"), "requirements": s.get("requirements"), "certified": s.get("certified"),
            "pass_rate": s.get("pass_rate"), "mean_radius": (sum(radii) / len(radii)) if radii else None,
            "samples": s.get("samples"), "models": run.get("models")}


def append_history(path: str | Path, doc: dict) -> dict:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = history_entry(doc)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
    return entry


_HISTORY_FIELDS = {"finished": str, "requirements": (int, type(None)), "certified": (int, type(None)),
                   "pass_rate": (int, float, type(None)), "mean_radius": (int, float, type(None))}


def read_history(path: str | Path, limit: int = 50) -> list[dict]:
    """The last ``limit`` entries. A line that is not a history entry (bad JSON, a missing or mistyped field)
    raises :class:`ResultsError` with the file and line: check it before a run, not after."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"history file {str(path)!r} cannot be read ({exc})") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"history file {str(path)!r}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise ResultsError(f"history file {str(path)!r}, line {number}: not a history entry (an object)")
        for field, kinds in _HISTORY_FIELDS.items():
            if isinstance(entry.get(field), bool) or not isinstance(entry.get(field), kinds):
                raise ResultsError(f"history file {str(path)!r}, line {number}: {field!r} is {entry.get(field)!r}; "
                                   "fix or remove the line (or start a new history file)")
        entries.append(entry)
    return entries[-limit:]


def _merged_gate(docs) -> str:
    """A failed shard fails the merge; otherwise an incomplete shard leaves it incomplete."""
    gates = {d["summary"].get("gate") for d in docs}
    return "failed" if "failed" in gates else ("incomplete" if "incomplete" in gates or None in gates else "passed")


def merge(docs: list[dict], names: list[str], force: bool = False) -> dict:
    """Merge sharded results (same models, oracles, seed and settings) into one document."""
    if not docs:
        raise ResultsError("nothing to merge")
    first = docs[0]["run"]
    for doc, name in zip(docs[1:], names[1:]):
        run = doc["run"]
        for field in ("models", "oracles", "seed", "settings"):
            if run.get(field) != first.get(field) and not force:
                raise ResultsError(f"{name} was run with different {field} than {names[0]} "
                                   f"({run.get(field)!r} vs {first.get(field)!r}); pass --force to merge anyway")
    results, seen, cases = [], {}, {}
    for doc, name in zip(docs, names):
        for record in doc["results"]:
            if record["nodeid"] in seen:
                raise ResultsError(f"requirement {record['nodeid']} appears in both {seen[record['nodeid']]} and {name}")
            seen[record["nodeid"]] = name
            results.append(record)
        cases.update(doc.get("cases", {}))
    counts = {s: sum(1 for r in results if r.get("status") == s) for s in ("certified", "not certified", "inconclusive", "error")}
    total = sum(counts.values())
    summary = {"requirements": total, **counts, "pass_rate": counts["certified"] / total if total else None,
               "samples": sum(d["summary"].get("samples", 0) for d in docs),
               "forward_samples": sum(d["summary"].get("forward_samples", 0) for d in docs),
               "gate": _merged_gate(docs)}
    incomplete = [f"{name}: {reason}" for d, name in zip(docs, names) for reason in d["summary"].get("incomplete", [])]
    if incomplete:
        summary["incomplete"] = incomplete
    run = dict(first)
    run["merged_from"] = names
    run["merged_run_ids"] = [d["run"].get("run_id") for d in docs]
    run["run_id"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-merged-" + secrets.token_hex(3)
    run["models"] = sorted({m for d in docs for m in d["run"].get("models", [])})
    run["oracles"] = sorted({m for d in docs for m in d["run"].get("oracles", [])})
    return {"schema": RESULTS_SCHEMA, "run": run, "summary": summary, "results": sorted(results, key=lambda r: r["nodeid"]), "cases": cases}
