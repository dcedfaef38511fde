"""The results document (schema ``certkit.results/1``, ``reports/results.json``): its schema, building it from a run's
records, writing it atomically, reading and checking it, merging the shards of one run, and the run history it feeds.

A document is a JSON object: ``schema``; ``run`` (the run's metadata: fingerprints, seed, settings, gate settings,
shard); ``summary`` (the counts of :func:`certkit.gate.summarize`, the gate and its reason, ``incomplete`` when the run
did not finish); ``results`` (one record per requirement, sorted by node id: ``nodeid``, ``status``, ``certificates``);
``cases`` (case hash -> id, prompt, thumbnail); and ``baseline`` when it was compared with one (:func:`baseline_record`).
The plugin, :mod:`certkit.regression`, the report and the ``certkit`` command read and write documents with this
module's functions. :func:`load_results` refuses a file whose body they could not read, before a run (``certkit report``
checks only the schema tag, so that it still renders a file whose body does not pass).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import tempfile
import time
from pathlib import Path

from . import gate, testdata
from .certificate import ERROR, REQUIREMENT_STATUSES, from_json_float

__all__ = [
    "RESULTS_SCHEMA", "ResultsError", "records", "certificates", "build", "write_results", "write_atomically", "load_results",
    "implied_radius", "baseline_record", "merge", "history_entry", "append_history", "read_history",
]

RESULTS_SCHEMA = "certkit.results/1"


class ResultsError(ValueError):
    """A results or baseline file that cannot be used; the message names the file and the problem."""


def records(doc: dict) -> list[dict]:
    """The document's requirement records (``results``; none in a document without them)."""
    return doc.get("results", [])


def certificates(record: dict) -> list[dict]:
    """A record's certificates (none for a requirement that produced none, such as an error)."""
    return record.get("certificates") or []


def build(results, run: dict, cases: dict, incomplete=(), test_data: dict | None = None) -> dict:
    """A results document from a run's records (each with its ``status``), its ``run`` metadata and its ``cases``: the
    records sorted by node id, the summary of :func:`certkit.gate.summarize` with ``incomplete`` (why the run did not
    finish) when there is a reason, and ``test_data`` (:func:`certkit.testdata.summarize`) when the run read any.
    The gate is not decided here: the caller adds it to the summary."""
    results = sorted(results, key=lambda r: r["nodeid"])
    summary = gate.summarize(results)
    if incomplete:
        summary["incomplete"] = list(incomplete)
    document = {"schema": RESULTS_SCHEMA, "run": run, "summary": summary, "results": results, "cases": cases}
    if test_data:
        document["test_data"] = test_data
    return document


def write_results(path: str | Path, document: dict) -> None:
    """Write a results document with :func:`write_atomically`."""
    write_atomically(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def write_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file of this call's own and a rename, creating the folder:
    readers see the old file or the new one, never a part, and concurrent writers never share a temporary file. The
    file is readable by all (0644); an error leaves the old file and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results and reports are for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_results(path: str | Path, what: str = "results", check_body: bool = True) -> dict:
    """The results document at ``path``, checked: the schema tag, and (``check_body``) every record and certificate with
    what comparing, merging and reporting read. Anything else raises :class:`ResultsError` naming the file (as ``what``:
    "baseline", "shard", ...) and the problem. ``certkit report`` passes ``check_body=False``: it renders what a file holds
    (an older file without the counts the regression test needs, say)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{what} file {str(path)!r} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{what} file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA or not isinstance(doc.get("results"), list):
        raise ResultsError(f"{what} file {str(path)!r} is not a certkit results file (schema {RESULTS_SCHEMA})")
    if check_body:
        _check_body(doc, f"{what} file {str(path)!r}")
    return doc


_STATUSES = set(REQUIREMENT_STATUSES)
_NUMBERS = ("p_a_lower", "threshold", "n", "successes")


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
                    raise ResultsError(f"{where_cert}: {key!r} must be a number, got {cert.get(key)!r}"
                                       + ("; the regression test needs each certificate's counts: write the file again with this "
                                          "certkit (a baseline: --certkit-update-baseline)"
                                          if key == "successes" and key not in cert else ""))
            n, k = cert["n"], cert["successes"]
            if not (float(n).is_integer() and float(k).is_integer() and 0 <= k <= n and n >= 1):
                raise ResultsError(f"{where_cert}: 'successes' and 'n' must be whole numbers with 0 <= successes <= n and n >= 1, "
                                   f"got successes={k!r}, n={n!r}")
            try:
                implied_radius(cert)
            except (KeyError, TypeError, ValueError) as exc:
                raise ResultsError(f"{where_cert}: its kernels or bounds cannot be read ({type(exc).__name__}: {exc})") from None


def implied_radius(cert: dict) -> float:
    """Largest image radius certified at the certificate's edits by its p_A lower bound (-inf: none)."""
    from . import bounds
    from .requirement import Noise

    if cert.get("mode") == "frontier" and cert.get("frontier"):
        return float(from_json_float(cert["frontier"][0]))
    if not cert.get("image_kernel"):
        return -math.inf
    noise = Noise.of_certificate(cert)
    text = noise.text()
    edits = int(cert.get("edits", 0)) if text is not None else 0
    return float(bounds.max_radius(float(cert["p_a_lower"]), noise.image(), text, edits, float(cert["threshold"])))


def baseline_record(path: str | None, comparison: dict) -> dict:
    """What a results document keeps of its comparison with a baseline (the report and ``certkit report`` read it):
    its lists, the rule, and both runs' fingerprints with whether the model or the oracle changed."""
    return {"path": path, **{k: comparison[k] for k in ("regressions", "improvements", "within_noise", "new", "removed",
                                                         "removed_records", "changed", "rule", "alpha", "tests", "fingerprints",
                                                         "model_changed", "oracle_changed")}}


#: what every shard of one run must agree on (the run's identity); ``--force`` merges past a disagreement, and says so
_AGREE = ("models", "oracles", "seed", "settings", "certkit_version", "gate")


def _check_shards(docs: list[dict], names: list[str]) -> tuple[list[str], int | None]:
    """Shards made with ``--certkit-shard``: the same suite and N, each index once, none missing. Returns the reasons a
    merge is incomplete (assigned requirements a shard did not evaluate) and N (None for documents not made with
    ``--certkit-shard``, e.g. split by hand with ``-k``, whose coverage cannot be checked)."""
    shards = [d["run"].get("shard") for d in docs]
    if all(s is None for s in shards):
        return [], None
    if any(s is None for s in shards):
        plain = [n for n, s in zip(names, shards) if s is None]
        raise ResultsError(f"{', '.join(plain)} {'was' if len(plain) == 1 else 'were'} not run with --certkit-shard, unlike the others; "
                           "merge the N results files of one sharded run")
    first, name0 = shards[0], names[0]
    # a shard stopped before its collection finished (Ctrl-C) knows its K/N but not the suite: it is not compared on it
    collected = [(shard, name) for shard, name in zip(shards, names) if "suite" in shard]
    suite, suite_name = collected[0] if collected else (first, name0)
    for shard, name in zip(shards, names):
        for field, what, ref, ref_name in (("total", "number of shards N", first, name0),
                                           ("suite", "collected suite (its node ids)", suite, suite_name)):
            if (field in shard or field == "total") and shard.get(field) != ref.get(field):
                raise ResultsError(f"{name} ran with another {what} than {ref_name} ({shard.get(field)!r} vs {ref.get(field)!r}); "
                                   "every shard must run the same suite with the same N")
    by_index: dict[int, str] = {}
    for shard, name in zip(shards, names):
        if shard["index"] in by_index:
            raise ResultsError(f"{by_index[shard['index']]} and {name} are both shard {shard['index']}/{first['total']}")
        by_index[shard["index"]] = name
    missing = sorted(set(range(1, first["total"] + 1)) - set(by_index))
    if missing:
        total = first["total"]
        raise ResultsError(f"shard(s) {', '.join(f'{k}/{total}' for k in missing)} missing: merge all {total} shards' "
                           "results files (a shard that failed still writes its results)")
    incomplete = []
    for doc, shard, name in zip(docs, shards, names):
        if "suite" not in shard:
            incomplete.append(f"{name} (shard {shard['index']}/{shard['total']}) stopped before its collection finished: its share "
                              "was never evaluated")
        evaluated = {r["nodeid"] for r in records(doc)}
        stray = sorted(evaluated - set(shard.get("assigned", [])))
        if stray:
            raise ResultsError(f"{name} holds {len(stray)} requirement(s) its shard was not assigned (e.g. {stray[0]}): not a shard's "
                               "own results")
        unevaluated = sorted(set(shard.get("requirements", [])) - evaluated)
        if unevaluated:
            incomplete.append(f"{name} (shard {shard['index']}/{shard['total']}) did not evaluate {len(unevaluated)} of its requirements "
                              f"(e.g. {unevaluated[0]}: deselected with -k, or never collected)")
    return incomplete, first["total"]


def merge(docs: list[dict], names: list[str], force: bool = False, command: list[str] | None = None,
          started: float | None = None) -> dict:
    """Merge the results of one sharded run into the document of one run, as :func:`build` makes it: every requirement,
    the summary, ``incomplete`` when any shard was or a shard did not evaluate all it was assigned. The gate is not
    decided here: the caller compares the merged document with a baseline if it has one
    (:func:`certkit.regression.compare`) and decides the gate once from both (:func:`certkit.gate.decide_document`),
    as for one run.

    ``run`` is the first shard's identity (fingerprints, seed, settings, ...) with the merge's own ``args`` (``command``),
    ``started`` (``started``: seconds since the epoch, default now), ``finished`` and ``duration_s``, and ``shards``: per
    file, its ``file``, ``run_id``, ``shard`` (K/N, None for a file not made with ``--certkit-shard``), ``args``,
    ``started``, ``finished``, ``duration_s`` and ``gate``.

    Refused (:class:`ResultsError`, naming each file): shards that disagree on the run's identity (model and oracle
    fingerprints, seed, settings, certkit version, gate settings; ``force`` merges anyway and records it), shards of
    ``--certkit-shard`` that ran another suite or N, repeat an index or leave one missing, and a requirement in two
    shards."""
    started = time.time() if started is None else started
    if not docs:
        raise ResultsError("nothing to merge")
    first = docs[0]["run"]
    forced = []
    for doc, name in zip(docs[1:], names[1:]):
        run = doc["run"]
        for field in _AGREE:
            if run.get(field) != first.get(field):
                if not force:
                    raise ResultsError(f"{name} was run with different {field} than {names[0]} "
                                       f"({run.get(field)!r} vs {first.get(field)!r}); pass --force to merge anyway")
                forced.append(f"{name}: {field}")
    unevaluated, total = _check_shards(docs, names)
    results, seen, cases = [], {}, {}
    for doc, name in zip(docs, names):
        for record in records(doc):
            if record["nodeid"] in seen:
                raise ResultsError(f"requirement {record['nodeid']} appears in both {seen[record['nodeid']]} and {name}")
            seen[record["nodeid"]] = name
            results.append(record)
        cases.update(doc.get("cases", {}))
    incomplete = [f"{name}: {reason}" for d, name in zip(docs, names) for reason in d["summary"].get("incomplete", [])] + unevaluated
    run = {k: v for k, v in first.items() if k != "shard"}
    run["merged_from"] = names
    run["merged_run_ids"] = [d["run"].get("run_id") for d in docs]
    run["merged_shards"] = total
    run["shards"] = [{"file": name, "run_id": d["run"].get("run_id"),
                      "shard": f"{d['run']['shard']['index']}/{d['run']['shard']['total']}" if d["run"].get("shard") else None,
                      **{k: d["run"].get(k) for k in ("args", "started", "finished", "duration_s")},
                      "gate": d["summary"].get("gate")} for d, name in zip(docs, names)]
    if forced:
        run["merged_despite"] = forced
    run["run_id"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + "-merged-" + secrets.token_hex(3)
    run["args"] = list(command) if command is not None else None
    run["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    run["models"] = sorted({m for d in docs for m in d["run"].get("models", [])})
    run["oracles"] = sorted({m for d in docs for m in d["run"].get("oracles", [])})
    document = build(results, run, cases, incomplete, testdata.merge(d.get("test_data") for d in docs))
    summary = document["summary"]
    summary["samples"] = sum(d["summary"].get("samples", 0) for d in docs)
    summary["forward_samples"] = sum(d["summary"].get("forward_samples", 0) for d in docs)
    run["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run["duration_s"] = round(max(0.0, time.time() - started), 3)
    return document


def _statuses(doc: dict) -> dict:
    """Each requirement key's status for the history: the key is the node id, with ``#i`` for the i-th extra certificate
    (as :mod:`certkit.regression` keys them); the status is the certificate's, or the record's where the record is an
    error or has no certificate."""
    out = {}
    for record in records(doc):
        certs = certificates(record)
        if not certs or record.get("status") == ERROR:
            out[record["nodeid"]] = record.get("status")
            for i in range(1, len(certs)):
                out[f"{record['nodeid']}#{i}"] = record.get("status")
            continue
        for i, cert in enumerate(certs):
            out[f"{record['nodeid']}#{i}" if i else record["nodeid"]] = cert.get("status")
    return out


def history_entry(doc: dict) -> dict:
    """A compact summary of one run for ``history.jsonl``: when it finished, its commit, counts, pass rate, mean radius and
    samples; its ``run_id``, gate verdict (``gate``), ``seed``, model and oracle fingerprints (``models``, ``oracles``) and
    every requirement key's status (``statuses``, see :func:`_statuses`). :func:`append_history` adds ``prev``."""
    radii = []
    for record in records(doc):
        for cert in certificates(record):
            r = implied_radius(cert)
            radii.append(r if math.isfinite(r) and r > 0 else 0.0)
    s, run = doc.get("summary", {}), doc.get("run", {})
    return {"finished": run.get("finished") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": (run.get("git") or {}).get("commit"), "requirements": s.get("requirements"), "certified": s.get("certified"),
            "pass_rate": s.get("pass_rate"), "mean_radius": (sum(radii) / len(radii)) if radii else None,
            "samples": s.get("samples"), "models": run.get("models"), "run_id": run.get("run_id"), "gate": s.get("gate"),
            "seed": run.get("seed"), "oracles": run.get("oracles"), "statuses": _statuses(doc)}


def line_digest(line: bytes) -> str:
    """The history chain's link: the hex SHA-256 of one history line's exact bytes, without its newline. Each line's
    ``prev`` is this digest of the line before it (``null`` on the first line)."""
    return hashlib.sha256(line).hexdigest()


def _last_line(f) -> bytes | None:
    """The exact bytes of the last non-blank line of the binary file ``f`` (without its newline), found by reading
    backwards from the end in blocks (a history of long lines is not read whole to append one); None for a file
    without one."""
    end = f.seek(0, os.SEEK_END)

    def back(stop):  # (offset, bytes) blocks from ``stop`` towards the start of the file
        while stop > 0:
            start = max(0, stop - (1 << 16))
            f.seek(start)
            yield start, f.read(stop - start)
            stop = start

    last = next((start + len(data.rstrip()) for start, data in back(end) if data.rstrip()), None)  # past its last byte
    if last is None:
        return None
    f.seek(last)
    rest = f.read(end - last)  # blank: the line's own trailing spaces, its newline, blank lines
    stop = last + (rest.find(b"\n") if b"\n" in rest else len(rest))
    begin = next((start + data.rfind(b"\n") + 1 for start, data in back(last) if b"\n" in data), 0)
    f.seek(begin)
    return f.read(stop - begin)


def append_history(path: str | Path, doc: dict) -> dict:
    """Append the document's :func:`history_entry` to the history file at ``path`` (created with its folder), chained:
    its ``prev`` is :func:`line_digest` of the file's last line (``null`` for the first). The file is locked while the
    last line is read and the new one written, so two runs that append to one file at once keep the chain; returns the
    entry written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = history_entry(doc)
    with open(path, "a+b") as f:
        try:
            import fcntl  # POSIX; elsewhere the file is appended without the lock
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        except ImportError:
            pass
        last = _last_line(f)
        entry["prev"] = line_digest(last) if last is not None else None
        size = f.seek(0, os.SEEK_END)
        lead = b""
        if size:  # a file whose last line lost its newline: the new line starts on a line of its own
            f.seek(size - 1)
            lead = b"" if f.read(1) == b"\n" else b"\n"
        f.write(lead + json.dumps(entry, sort_keys=True).encode("utf-8") + b"\n")
    return entry


_HISTORY_FIELDS = {"finished": str, "requirements": (int, type(None)), "certified": (int, type(None)),
                   "pass_rate": (int, float, type(None)), "mean_radius": (int, float, type(None))}
#: fields a line written since the chain began has; a line written before it lacks them (and is read all the same)
_CHAIN_FIELDS = {"prev": (str, type(None)), "run_id": (str, type(None)), "gate": (str, type(None)), "seed": (int, type(None)),
                 "oracles": (list, type(None)), "statuses": (dict, type(None))}


def read_history(path: str | Path, limit: int = 50) -> list[dict]:
    """The last ``limit`` entries. A line that is not a history entry (bad JSON, a missing or mistyped field, a mistyped
    chain field where it has one) raises :class:`ResultsError` with the file and line: check it before a run, not after.
    Lines written before the chain (no ``prev``, ``run_id``, ``gate``, ``seed``, ``oracles``, ``statuses``) are read as
    they are; whether the chain holds is ``certkit verify``'s check (:mod:`certkit.evidence`), not a reason to stop a run."""
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
        for field, kinds in _CHAIN_FIELDS.items():
            if field in entry and (isinstance(entry[field], bool) or not isinstance(entry[field], kinds)):
                raise ResultsError(f"history file {str(path)!r}, line {number}: {field!r} is {entry[field]!r}; "
                                   "fix or remove the line (or start a new history file)")
        entries.append(entry)
    return entries[-limit:]
