"""Reading audit cases: :func:`load_cases` from a JSONL, YAML or CSV case file, or (through :mod:`certkit.datasets_io`)
a ``.parquet`` file, a ``save_to_disk`` folder or a ``datasets.Dataset``; every source read is recorded in
:mod:`certkit.testdata`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from . import testdata
from .cases import Case, CaseError
from .datasets_io import is_dataset, read_dataset

__all__ = ["load_cases"]


_KNOWN = ("id", "prompt", "image", "expected")


def _strict_yaml_loader():
    """A safe YAML loader that refuses duplicate keys (YAML would silently keep the last) and keeps an unquoted
    ``id`` as written (YAML 1.1 reads ``010`` as the number 8 and ``1_000`` as 1000)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key] + 1}); each key may appear once per case",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line
            mapping = super().construct_mapping(node, deep=deep)
            for key_node, value_node in node.value:
                if (key_node.value == "id" and isinstance(value_node, yaml.ScalarNode) and value_node.style is None
                        and value_node.tag == "tag:yaml.org,2002:int"):
                    mapping["id"] = value_node.value
            return mapping

    return StrictLoader


def _line_of_yaml_item(text: str, index: int) -> int:
    """Best-effort line number of the ``index``-th top-level ``- `` item of a YAML list."""
    seen = -1
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith("- "):
            seen += 1
            if seen == index:
                return lineno
    return 1


def _wrong_types(row: dict) -> str | None:
    """Why a row's fields have the wrong types (None if they are fine). YAML reads ``prompt: yes`` as a
    boolean and ``id: no`` as False: such values are refused, never turned into the text "True"."""
    cid, prompt, image, expected = row["id"], row["prompt"], row["image"], row.get("expected")
    if isinstance(cid, bool) or not isinstance(cid, (str, int)):
        return f"id must be text or a whole number, got {type(cid).__name__} {cid!r}; quote it"
    if not isinstance(prompt, str):
        return f"prompt must be text, got {type(prompt).__name__} {prompt!r}; quote it (YAML reads yes/no/on/off and numbers as non-text)"
    if not isinstance(image, str):
        return f"image must be a file path relative to the case file, got {type(image).__name__} {image!r}"
    if expected is not None and not isinstance(expected, str):
        return f"expected must be an outcome label (text), got {type(expected).__name__} {expected!r}"
    return None


def _check_fields(fields) -> dict:
    """``fields`` as given (None: {}), refused in one line unless it maps some of id, prompt, image, expected to names."""
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        raise CaseError(f"fields must be a dict mapping id, prompt, image or expected to your column names, e.g. "
                        f"fields={{'prompt': 'question'}}; got {type(fields).__name__}")
    unknown = sorted(str(k) for k in set(fields) - set(_KNOWN))
    if unknown:
        raise CaseError(f"fields: unknown key(s) {', '.join(unknown)}; map any of {', '.join(_KNOWN)} to a column name, "
                        "e.g. fields={'prompt': 'question'}")
    for key, col in fields.items():
        if not isinstance(col, str) or not col:
            raise CaseError(f"fields[{key!r}] must be a column name (text), got {col!r}")
    return dict(fields)


def load_cases(source: str | Path | Any, fields: dict | None = None) -> list[Case]:
    """Read audit cases from a JSONL, YAML or CSV file (one case per line / list item / row), or, through the optional
    ``datasets`` library, a ``.parquet`` file, a folder written by ``Dataset.save_to_disk`` or a ``datasets.Dataset``
    (one case per row: :func:`certkit.datasets_io.read_dataset`, whose images are read when a requirement first uses
    them).

    Fields: ``id`` (unique, stable: it names the pytest test, the baseline entry and the cache entry),
    ``prompt``, ``image`` (a path relative to the case file's folder), optional ``expected``; any other
    field is kept in ``Case.meta``. ``fields`` maps these names to the file's or dataset's own, e.g.
    ``fields={"prompt": "question", "image": "img"}``. Returns the cases in file order, at least one, their ids
    unique and exactly as written (a YAML ``id: 010`` stays ``"010"``). Every source read is recorded with its
    digest and characteristics (:mod:`certkit.testdata`: the results' ``test_data``). Every problem (unknown suffix,
    not UTF-8, bad syntax, a missing or mistyped field, a duplicate id or key, a bad image, no cases, a bad
    ``fields``) raises :class:`CaseError` naming the file and, where there is one, the line (the row of a dataset).
    """
    import csv
    import json

    fields = _check_fields(fields)
    if not isinstance(source, (str, os.PathLike)):
        if is_dataset(source):
            return read_dataset(source, fields)
        raise CaseError(f"load_cases cannot read a {type(source).__name__}; give the path of a .jsonl, .yaml, .csv or .parquet "
                        "file or of a save_to_disk folder, or a datasets.Dataset")
    path = Path(source)
    if path.is_dir() or path.suffix.lower() == ".parquet":
        return read_dataset(path, fields)
    if not path.is_file():
        raise CaseError(f"case file {str(path)!r} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel's CSV export) is not part of the first field
    except UnicodeDecodeError as exc:
        raise CaseError(f"case file {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    suffix = path.suffix.lower()
    rows: list[tuple[int, object]] = []
    if suffix in (".jsonl", ".ndjson"):
        # lines end at "\n" only: JSON strings may hold U+2028 and other characters str.splitlines() splits on
        for lineno, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CaseError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_strict_yaml_loader())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise CaseError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        if isinstance(data, dict) and "cases" in data:
            data = data["cases"]
        if not isinstance(data, list):
            raise CaseError(f"{path}:1: a YAML case file must be a list of cases (or a mapping with a 'cases' list)")
        rows = [(_line_of_yaml_item(text, i), item) for i, item in enumerate(data)]
    elif suffix == ".csv":
        import io

        reader = csv.DictReader(io.StringIO(text, newline=""))  # the csv module's quoting: a quoted prompt may span lines
        for row in reader:
            rows.append((reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}))
    else:
        raise CaseError(f"case file {str(path)!r}: unknown format {suffix!r}; use .jsonl, .yaml/.yml or .csv, or a .parquet file "
                        "or save_to_disk folder (read through datasets)")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        if not isinstance(row, dict):
            raise CaseError(f"{path}:{lineno}: a case must be a mapping with id, prompt and image, got {type(row).__name__}")
        if fields:
            row = {**{k: v for k, v in row.items() if k not in fields.values()},
                   **{key: row[col] for key, col in fields.items() if col in row}}
        missing = [f for f in ("id", "prompt", "image") if f not in row or row[f] in (None, "")]
        if missing:
            named = [f"{f} (field {fields[f]!r}, named by fields=)" if f in fields else f for f in missing]
            raise CaseError(f"{path}:{lineno}: case is missing required field(s) {', '.join(named)}")
        wrong = _wrong_types(row)
        if wrong:
            raise CaseError(f"{path}:{lineno}: {wrong}")
        cid = str(row["id"])
        if cid in seen:
            raise CaseError(f"{path}:{lineno}: duplicate case id {cid!r} (first on line {seen[cid]}); ids must be unique")
        seen[cid] = lineno
        try:
            case = Case(cid, row["prompt"], path.parent / row["image"], row.get("expected"),
                        {k: v for k, v in row.items() if k not in _KNOWN}, f"{path}:{lineno}")
        except CaseError as exc:
            raise CaseError(f"{path}:{lineno}: {exc}") from None
        cases.append(case)
    if not cases:
        raise CaseError(f"case file {str(path)!r} holds no cases")
    meta, sizes = testdata.characteristics((c.meta for c in cases), ((c.shape[2], c.shape[1]) for c in cases))
    testdata.record(path, hashlib.sha256(raw).hexdigest(), suffix.lstrip(".").replace("yml", "yaml").replace("ndjson", "jsonl"),
                    len(cases), meta, sizes)
    return cases
