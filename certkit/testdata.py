"""The test data a run read: each source ``load_cases`` read, with its digest and its main characteristics.

Every call of :func:`certkit.load_cases` records its source here (:func:`record`): the path, a SHA-256 digest
(:func:`file_digest` of a case or parquet file; :func:`folder_digest` of a folder written by ``Dataset.save_to_disk``;
an in-memory ``datasets.Dataset`` has no file, and records its ``_fingerprint``), the format, the number of rows, the
counts of each categorical ``meta`` column and the image sizes. The records live in this process (a test module is
imported on an xdist worker, not on the controller); the plugin sends the ones read since its run began with the
test reports, and the controller folds them with :func:`summarize` into the results document's ``test_data``:
``{"sources": [...], "cases": N, "meta": {column: {value: count}}, "image_sizes": {"WxH": count}}``. Shards'
documents merge with :func:`merge`. Nothing here imports numpy or the ``datasets`` library.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

__all__ = ["MAX_META_VALUES", "MAX_IMAGE_SIZES", "file_digest", "folder_digest", "characteristics", "record", "mark", "read_since",
           "summarize", "merge"]

#: a meta column with more distinct values than this (an id, a free-text note, a URL) is no category: it is not counted
MAX_META_VALUES = 50
#: the most common image sizes counted one by one; the rest are summed under "other"
MAX_IMAGE_SIZES = 50

_READ: list[dict] = []  # every source read in this process, in order (a source read twice is here twice)


def file_digest(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes (what ``sha256sum FILE`` prints): the one file digest of certkit (case files,
    datasets, the demo's weights, the evidence bundle's subjects)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_digest(path: str | Path) -> str:
    """Hex SHA-256 of the folder's manifest: one line ``<sha256 of the file>  <path relative to the folder>`` per file
    below it, sorted by path (posix, byte order), as ``sha256sum`` writes it. The shell gives the same digest:
    ``cd DIR && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum``."""
    root = Path(path)
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    manifest = "".join(f"{file_digest(p)}  {name}\n" for name, p in files)
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _category(value) -> str | None:
    """A meta value as a count's key: text as written, numbers, booleans and null as JSON; None for anything else."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def characteristics(metas, sizes) -> tuple[dict, dict]:
    """``(meta counts, image size counts)`` of a source's cases, from each case's ``meta`` dict and its image's
    ``(width, height)``. A meta column is counted when every value is text, a number, a boolean or null and it holds
    at most :data:`MAX_META_VALUES` distinct values (a category); image sizes keep the :data:`MAX_IMAGE_SIZES` most
    common as ``"WxH"``, the rest summed under ``"other"``. Keys are sorted, so equal data gives equal JSON."""
    counts: dict[str, Counter] = {}
    dropped: set[str] = set()
    for meta in metas:
        for column, value in meta.items():
            if column in dropped:
                continue
            key = _category(value)
            column_counts = counts.setdefault(column, Counter())
            column_counts[key] += 1
            if key is None or len(column_counts) > MAX_META_VALUES:
                dropped.add(column)
                del counts[column]
    sized = Counter(f"{w}x{h}" for w, h in sizes)
    kept = sorted(sized.items(), key=lambda kv: (-kv[1], kv[0]))
    image_sizes = dict(kept[:MAX_IMAGE_SIZES])
    if len(kept) > MAX_IMAGE_SIZES:
        image_sizes["other"] = sum(n for _, n in kept[MAX_IMAGE_SIZES:])
    return ({column: dict(sorted(c.items())) for column, c in sorted(counts.items())}, dict(sorted(image_sizes.items())))


def record(path: str | Path | None, sha256: str, format: str, rows: int, meta: dict, image_sizes: dict) -> dict:
    """Record one source read in this process and return its record: ``path`` (absolute; None for data in memory),
    ``sha256``, ``format`` (jsonl, yaml, csv, parquet, save_to_disk, datasets.Dataset), ``rows`` (the cases read) and the
    counts of :func:`characteristics`."""
    entry = {"path": None if path is None else str(Path(path).resolve()), "sha256": sha256, "format": format, "rows": int(rows),
             "meta": meta, "image_sizes": image_sizes}
    _READ.append(entry)
    return entry


def mark() -> int:
    """Where the records of this process stand now: :func:`read_since` of it returns only sources read later."""
    return len(_READ)


def read_since(position: int) -> list[dict]:
    """Copies of the sources recorded since ``position`` (a :func:`mark`), in the order they were read."""
    return [dict(entry) for entry in _READ[position:]]


def _key(source: dict) -> tuple:
    return (source.get("path"), source.get("sha256"), source.get("format"))


def summarize(sources) -> dict | None:
    """The results document's ``test_data`` from source records (None when there are none): ``sources`` (each
    distinct (path, sha256, format) once, sorted by path; a file read twice with the same bytes is one source, a file
    that changed between two reads is two), ``cases`` (their rows summed), ``meta`` (the counts summed per column
    and value) and ``image_sizes`` (summed per size)."""
    distinct: dict[tuple, dict] = {}
    for source in sources:
        distinct.setdefault(_key(source), source)
    if not distinct:
        return None
    ordered = sorted(distinct.values(), key=lambda s: (s.get("path") or "", s.get("sha256") or "", s.get("format") or ""))
    meta: dict[str, Counter] = {}
    sizes: Counter = Counter()
    for source in ordered:
        for column, counts in (source.get("meta") or {}).items():
            meta.setdefault(column, Counter()).update(counts)
        sizes.update(source.get("image_sizes") or {})
    return {
        "sources": [{"path": s.get("path"), "sha256": s.get("sha256"), "format": s.get("format"), "rows": int(s.get("rows", 0)),
                     "meta": s.get("meta") or {}, "image_sizes": s.get("image_sizes") or {}} for s in ordered],
        "cases": sum(int(s.get("rows", 0)) for s in ordered),
        "meta": {column: dict(sorted(c.items())) for column, c in sorted(meta.items())},
        "image_sizes": dict(sorted(sizes.items())),
    }


def merge(test_data) -> dict | None:
    """One ``test_data`` from the shards' (None where a shard has none): their sources, each distinct one once, summed
    as :func:`summarize` does (the shards of one run read the same data, which then counts once)."""
    return summarize(source for td in test_data if td for source in td.get("sources", []))
