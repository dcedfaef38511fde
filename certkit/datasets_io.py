"""Cases from the Hugging Face ``datasets`` library, the way VLM safety benchmarks ship (MM-SafetyBench, VLGuard,
JailBreakV-28K, SPA-VL): a ``.parquet`` file, a folder written by ``Dataset.save_to_disk``, or a ``datasets.Dataset``.

Everything is read through ``datasets`` (``Dataset.from_parquet``, ``load_from_disk``): a parquet file becomes
datasets' memory-mapped Arrow cache, so a large set is not held in memory. The text columns are read in bulk; the
image column once, a batch at a time, for each image's header only (its size for the test data's characteristics,
and a first check that it is an image), never its pixels. Each case gets a :class:`~certkit.cases.LazyImage` that
reads its row's image when a requirement first uses it, with :func:`~certkit.cases.decode_image` (the pixels a PNG
file of the same bytes gives, so a case keeps its content hash whichever format it came from). The ``datasets``
library is an optional extra (``pip install 'certkit[datasets]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
from pathlib import Path

from . import testdata
from .cases import Case, CaseError, LazyImage, decode_image

__all__ = ["read_dataset", "is_dataset"]

_BATCH = 2048  # image rows read at a time in the header pass
_BINARY = ("binary", "large_binary")
_TEXT = ("string", "large_string")
_MEDIA = ("Image", "Audio", "Video", "Pdf", "Nifti")  # datasets' encoded-media features: never copied into meta


def is_dataset(obj) -> bool:
    """Whether ``obj`` is one of the ``datasets`` library's dataset objects (told without importing the library)."""
    return type(obj).__module__.split(".")[0] == "datasets"


def _datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise CaseError(f"reading {what} needs the `datasets` library: pip install 'certkit[datasets]'") from None
    return datasets


@contextlib.contextmanager
def _quiet(datasets):
    """Silence datasets' progress bars while it reads (restored after: they are the user's setting)."""
    was = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            datasets.enable_progress_bars()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _open_path(path: Path):
    """(dataset, where, folder of relative image paths, digest, format) of a parquet file or a save_to_disk folder."""
    if not path.exists():
        raise CaseError(f"case data {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            try:
                splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
            except (OSError, ValueError, KeyError, TypeError):
                splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            example = str(path / splits[0]) if splits else str(path / "SPLIT")
            raise CaseError(f"{path}: a DatasetDict folder with splits {', '.join(splits) or '(none)'}; give one split's folder, "
                            f"e.g. load_cases({example!r})")
        if not (path / "state.json").is_file():
            raise CaseError(f"{path} is a folder, not one written by Dataset.save_to_disk (it has no state.json); give that "
                            "folder, a .parquet file, or a .jsonl, .yaml or .csv case file")
        datasets = _datasets(f"the save_to_disk folder {str(path)!r}")
        try:
            with _quiet(datasets):
                ds = datasets.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001 - datasets raises many kinds (FileNotFoundError, ArrowInvalid, JSON errors)
            raise CaseError(f"{path}: datasets.load_from_disk could not read it ({_first_line(exc)}); save it again with "
                            "Dataset.save_to_disk") from None
        if not isinstance(ds, datasets.Dataset):
            raise CaseError(f"{path}: holds a {type(ds).__name__}, not one Dataset; give one split's folder")
        return ds, str(path), path.parent, testdata.folder_digest(path), "save_to_disk"
    datasets = _datasets(f"the parquet file {str(path)!r}")
    try:
        with _quiet(datasets):
            ds = datasets.Dataset.from_parquet(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets wraps pyarrow's errors in several kinds
        cause = exc.__cause__ or exc
        raise CaseError(f"{path}: not a readable parquet file ({_first_line(cause)}); write it again, e.g. with "
                        "Dataset.to_parquet") from None
    return ds, str(path), path.parent, testdata.file_digest(path), "parquet"


def _in_memory(obj, datasets):
    """The Dataset given, or a CaseError saying what to pass instead of another datasets object."""
    if isinstance(obj, datasets.Dataset):
        return obj
    if isinstance(obj, datasets.DatasetDict):
        splits = list(obj)
        raise CaseError(f"load_cases got a DatasetDict with splits {', '.join(splits) or '(none)'}; pass one split, "
                        f"e.g. load_cases(ds[{(splits or ['test'])[0]!r}])")
    if isinstance(obj, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise CaseError(f"load_cases got a streaming {type(obj).__name__}, which has no length or random access; "
                        "load it without streaming=True")
    raise CaseError(f"load_cases cannot read a {type(obj).__name__}; give a datasets.Dataset, a .parquet file or a save_to_disk folder")


def _column(names: list[str], fields: dict, key: str, required: bool, where: str) -> str | None:
    """The column that holds ``key``: the one ``fields`` names, else the one called ``key``; a CaseError naming the
    column, the columns there are and the ``fields=`` fix when a required or named one is missing."""
    col = fields.get(key, key)
    if col in names:
        return col
    if key in fields or required:
        named = f" (named by fields={{{key!r}: {col!r}}})" if key in fields else ""
        raise CaseError(f"{where}: no column {col!r} for the {key}{named}; the columns are {', '.join(names)}: name yours "
                        f"with load_cases(..., fields={{{key!r}: 'your column'}})")
    return None


def _image_kind(feature, datasets, col: str, where: str) -> tuple[str, str | None]:
    if isinstance(feature, datasets.Image):
        return "image", feature.mode
    if isinstance(feature, dict) and set(feature) == {"bytes", "path"}:  # the Image feature's storage, written without its metadata
        return "image", None
    if isinstance(feature, datasets.Value) and feature.dtype in _BINARY:
        return "bytes", None
    if isinstance(feature, datasets.Value) and feature.dtype in _TEXT:
        return "path", None
    raise CaseError(f"{where}: column {col!r} holds {feature}; certkit reads an image column as the datasets Image feature, "
                    "encoded image bytes or file paths (relative to the data's folder)")


def _values(ds, cols: list[str], datasets) -> dict[str, list]:
    """Each column's values as Python objects, a ClassLabel's as its names (None for a missing label)."""
    if not cols:
        return {}
    table = ds.select_columns(cols).with_format("arrow")[:]
    out = {}
    for col in cols:
        values = table.column(col).to_pylist()
        feature = ds.features[col]
        if isinstance(feature, datasets.ClassLabel):
            values = [feature.int2str(v) if isinstance(v, int) and v >= 0 else None for v in values]
        out[col] = values
    return out


class _ImageColumn:
    """Reads one row's image (its bytes, or the file its path names) from the dataset's image column."""

    def __init__(self, ds, col: str, kind: str, mode: str | None, folder: Path):
        self.rows = ds.select_columns([col]).with_format("arrow")
        self.kind, self.mode, self.folder = kind, mode, folder

    def encoded(self, item, where: str) -> bytes | Path:
        """An item of the column as stored: its bytes, or the path of its file; a CaseError for none."""
        if self.kind == "image" and isinstance(item, dict):
            data, path = item.get("bytes"), item.get("path")
        elif self.kind == "bytes":
            data, path = item, None
        else:
            data, path = None, item
        if data:
            return bytes(data)
        if isinstance(path, str) and path:
            file = Path(path) if Path(path).is_absolute() else self.folder / path
            if not file.is_file():
                raise CaseError(f"{where}: image file {str(file)!r} does not exist; image paths are relative to {str(self.folder)!r}")
            return file
        raise CaseError(f"{where}: no image (the column holds {'null' if item is None else repr(item)[:60]}); every case needs one")

    def read(self, index: int, where: str):
        """The pixels of row ``index``'s image (:func:`~certkit.cases.decode_image`)."""
        item = self.rows[index].column(0)[0].as_py()
        encoded = self.encoded(item, where)
        if isinstance(encoded, Path):
            return decode_image(encoded, f"file {str(encoded)!r}", self.mode)
        return decode_image(io.BytesIO(encoded), "the row's image bytes", self.mode)


def _header_size(encoded: bytes | Path, where: str) -> tuple[int, int]:
    """(width, height) as a viewer shows the image (EXIF orientation applied), from its header: no pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(encoded) if isinstance(encoded, bytes) else encoded
    try:
        with Image.open(source) as img:
            w, h = img.size
            # the orientation tag read from the header (a PNG's getexif() would decode the pixels to look behind them)
            if img.format == "TIFF":
                orientation = img.getexif().get(0x0112)
            elif img.info.get("exif"):
                exif = Image.Exif()
                exif.load(img.info["exif"])
                orientation = exif.get(0x0112)
            else:
                orientation = None
            if orientation in (5, 6, 7, 8):
                w, h = h, w  # turned a quarter, as decode_image turns it
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).replace(repr(source), "it")  # PIL names a file object by its repr (an address)
        raise CaseError(f"{where}: image is not a readable image ({reason}); re-export it as PNG") from None
    return w, h


def read_dataset(source, fields: dict) -> list[Case]:
    """The cases of a parquet file or save_to_disk folder (``source`` a Path) or of a ``datasets.Dataset``, one per row in
    row order, their images read lazily; the source is recorded with :func:`certkit.testdata.record`.

    Columns: ``prompt`` and ``image`` (required), ``id`` and ``expected`` (optional), or those ``fields`` names. An image
    column holds the datasets Image feature, encoded bytes or file paths (relative to the folder of the parquet file or
    save_to_disk folder; to the current folder for a Dataset in memory). Ids come from the id column, else are the first
    16 hex digits of the SHA-256 of the prompt and the image as stored (its bytes, or its path). Every other column but
    encoded media is kept in ``Case.meta``; a ClassLabel column (``expected`` too) reads as its label names. Every
    problem raises a one-line :class:`~certkit.cases.CaseError` naming the source and, for a row, its index (from 0, as
    ``ds[i]``) and id."""
    if isinstance(source, Path):
        ds, where, folder, digest, fmt = _open_path(source)
        datasets = _datasets(where)
        path = source
    else:
        datasets = _datasets("a datasets.Dataset")
        ds = _in_memory(source, datasets)
        where, folder, digest, fmt, path = "the datasets.Dataset", Path.cwd(), ds._fingerprint, "datasets.Dataset", None
    names = list(ds.column_names)
    prompt_col = _column(names, fields, "prompt", True, where)
    image_col = _column(names, fields, "image", True, where)
    id_col = _column(names, fields, "id", False, where)
    expected_col = _column(names, fields, "expected", False, where)
    kind, mode = _image_kind(ds.features[image_col], datasets, image_col, where)
    used = {prompt_col, image_col, id_col, expected_col} - {None}
    meta_cols = [c for c in names if c not in used and type(ds.features[c]).__name__ not in _MEDIA
                 and not (isinstance(ds.features[c], datasets.Value) and ds.features[c].dtype in _BINARY)]
    values = _values(ds, list(dict.fromkeys(c for c in (id_col, prompt_col, expected_col, *meta_cols) if c)), datasets)
    images = _ImageColumn(ds, image_col, kind, mode, folder)
    n = ds.num_rows
    if n == 0:
        raise CaseError(f"{where} holds no cases (0 rows)")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    sizes: list[tuple[int, int]] = []
    for start in range(0, n, _BATCH):
        batch = images.rows[start:start + _BATCH].column(0).to_pylist()
        for offset, item in enumerate(batch):
            i = start + offset
            at = f"{where}: row {i}"
            cid = values[id_col][i] if id_col else None
            prompt = values[prompt_col][i]
            expected = values[expected_col][i] if expected_col else None
            if id_col:
                if cid is None or cid == "":
                    raise CaseError(f"{at}: column {id_col!r} is empty; every case needs an id")
                at = f"{at} (id {cid!r})"
            if prompt is None or prompt == "":
                raise CaseError(f"{at}: column {prompt_col!r} is empty; a requirement needs the user's text to certify")
            if id_col and (isinstance(cid, bool) or not isinstance(cid, (str, int))):
                raise CaseError(f"{at}: column {id_col!r} holds {type(cid).__name__} {cid!r}; an id must be text or a whole number")
            if not isinstance(prompt, str):
                raise CaseError(f"{at}: column {prompt_col!r} holds {type(prompt).__name__} {prompt!r}; the prompt must be text")
            if expected is not None and not isinstance(expected, str):
                raise CaseError(f"{at}: column {expected_col!r} holds {type(expected).__name__} {expected!r}; the expected "
                                "outcome must be a label (text)")
            encoded = images.encoded(item, at)
            if not id_col:
                stored = encoded if isinstance(encoded, bytes) else str(item["path"] if isinstance(item, dict) else item).encode("utf-8")
                cid = hashlib.sha256(prompt.encode("utf-8") + b"\0" + stored).hexdigest()[:16]
                at = f"{at} (id {cid!r})"
            cid = str(cid)
            if cid in seen:
                why = "" if id_col else (f" (rows {seen[cid]} and {i} hold the same prompt and image; drop one, or give an id column "
                                         "with fields={'id': ...})")
                raise CaseError(f"{at}: duplicate case id {cid!r} (first in row {seen[cid]}); ids must be unique{why}")
            seen[cid] = i
            sizes.append(_header_size(encoded, at))
            meta = {c: values[c][i] for c in meta_cols}
            try:
                case = Case(cid, prompt, LazyImage(functools.partial(images.read, i, at), at), expected, meta, f"{where}: row {i}")
            except CaseError as exc:
                raise CaseError(f"{at}: {exc}") from None
            cases.append(case)
    meta_counts, size_counts = testdata.characteristics((c.meta for c in cases), sizes)
    testdata.record(path, digest, fmt, len(cases), meta_counts, size_counts)
    return cases
