"""Audit cases: a prompt, an image and a stable id.

The image is the point the certificate is centred on. It is held as float
pixels in [0, 1], shape (C, H, W), at the resolution the case states: the
certified l2 radius is measured in exactly that space (a radius of 1.0 on a
3x32x32 image is a different budget than on 3x336x336). Images load from PNG
or JPEG with Pillow, or come in as arrays/tensors already in that space. Case files are read by
:mod:`certkit.casefiles`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CertkitError

__all__ = ["Case", "CaseError", "LazyImage", "LAZY_PIXELS_KEPT", "load_image", "decode_image"]


class CaseError(CertkitError):
    """A case (prompt, image, id) that cannot be certified as given; the message names the field and the fix."""


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as float32 pixels in [0, 1], shape (C, H, W): RGB, or 1 channel for greyscale without alpha.

    8-bit images are divided by 255 and 16-bit greyscale by 65535; an alpha channel is dropped (greyscale with
    alpha, palette, CMYK and YCbCr images become RGB). Files whose
    pixels have no fixed scale (32-bit integer or float) are refused rather than guessed at. An EXIF
    orientation tag is applied (the pixels are those a viewer shows). Animated images (GIF, APNG, WebP with
    more than one frame) are refused: a certificate is about one still image, so save the frame you mean.
    Every refusal (missing, unreadable, animated, too large or unscaled file) is a :class:`CaseError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise CaseError(f"image: file {str(path)!r} does not exist; fix the path (relative paths are from the case file's folder)")
    if not path.is_file():
        raise CaseError(f"image: {str(path)!r} is not a file; give the path of a PNG or JPEG image")
    return decode_image(path, f"file {str(path)!r}")


def decode_image(source, name: str, mode: str | None = None) -> np.ndarray:
    """The pixels of an encoded image (a path, or a binary file object such as ``io.BytesIO(png_bytes)``), read exactly
    as :func:`load_image` reads a file; ``name`` says what it is in a refusal ("file 'a.png'", "row 3's image bytes").
    ``mode`` (a PIL mode such as "RGB", as a ``datasets`` Image feature may state) converts the image first."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(source) as opened:
            if getattr(opened, "n_frames", 1) > 1:
                raise CaseError(f"image: {name} is animated ({opened.n_frames} frames); certkit certifies one still "
                                "image: save the frame you mean as a PNG (PIL: ImageSequence, or img.seek(k))")
            opened.load()
            img = ImageOps.exif_transpose(opened)
            if mode is not None and img.mode != mode:
                img = img.convert(mode)
            if img.mode in _SIXTEEN_BIT:
                arr = np.asarray(img, dtype=np.float32) / 65535.0
            elif img.mode in ("I", "F"):
                raise CaseError(
                    f"image: {name} holds {'32-bit integer' if img.mode == 'I' else 'floating-point'} pixels, "
                    "whose [0, 1] scale certkit cannot know; save it as an 8- or 16-bit PNG, or pass the case an array in [0, 1]"
                )
            else:
                if img.mode not in ("RGB", "L"):
                    img = img.convert("RGB")  # palette, CMYK, YCbCr; RGBA and LA drop their alpha channel
                arr = np.asarray(img, dtype=np.float32) / 255.0
    except CaseError:
        raise
    except Image.DecompressionBombError as exc:
        raise CaseError(f"image: {name} is too large to decode safely ({exc}); downscale it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).replace(repr(source), "it")  # PIL names a file object by its repr (an address)
        raise CaseError(f"image: {name} is not a readable image ({reason}); re-export it as PNG") from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
    return arr


def _as_chw(image: Any, case_id: str) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return load_image(image)
    if hasattr(image, "detach"):  # a torch tensor, without importing torch here
        image = image.detach().cpu().float().numpy()
    try:
        arr = np.asarray(image, dtype=np.float32)
    except (TypeError, ValueError):
        raise CaseError(f"case {case_id!r}: image must be a path or an array of pixels, got {type(image).__name__}") from None
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise CaseError(
            f"case {case_id!r}: image must have shape (C, H, W) with C = 1 or 3, got {tuple(arr.shape)}; "
            "convert HWC arrays with .transpose(2, 0, 1)"
        )
    if not np.all(np.isfinite(arr)):
        raise CaseError(f"case {case_id!r}: image contains NaN or infinite pixels")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise CaseError(
            f"case {case_id!r}: image pixels must lie in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}]; "
            "divide 8-bit images by 255 (the certified radius is measured in [0, 1] pixel units)"
        )
    return arr


class LazyImage:
    """An image whose pixels are read when a requirement first needs them, not when its case is made.

    ``read()`` returns what :class:`Case` accepts as an image (a path, or pixels in [0, 1] as (C, H, W)); ``where``
    prefixes any refusal ("cases.parquet: row 17"), so a bad image names its source and row. A case with a lazy image
    is validated (id, prompt) when made; its pixels when first read, with the same checks and messages as an eager
    case's. The last :data:`LAZY_PIXELS_KEPT` images read stay decoded; the others are read again when used again."""

    __slots__ = ("read", "where")

    def __init__(self, read: Callable[[], Any], where: str):
        self.read, self.where = read, where

    def __repr__(self) -> str:
        return f"LazyImage({self.where})"


#: decoded pixels of the lazily read images most recently used, kept to spare a requirement a second decode
LAZY_PIXELS_KEPT = 8


@functools.lru_cache(maxsize=LAZY_PIXELS_KEPT)
def _lazy_pixels(lazy: LazyImage, case_id: str) -> np.ndarray:
    """The validated, read-only pixels of a lazy image (by the LazyImage's identity: one entry per case)."""
    try:
        arr = _as_chw(lazy.read(), case_id)
    except CaseError as exc:
        raise CaseError(f"{lazy.where}: {exc}") from None
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Case:
    """One audited input: ``prompt`` (the user's text; only its tokens are perturbed), ``image``
    (float (C, H, W) in [0, 1]) and a stable ``id`` (used by pytest ids, baselines and the cache).

    ``expected`` is an optional expected outcome label; ``meta`` carries free-form fields from the case file;
    ``where`` is where the case was read (``cases.jsonl:7``, set by :func:`load_cases`), named by errors about it.
    ``image`` may be a path (read by :func:`load_image`), an array or a tensor; it is stored as a read-only float32
    numpy array. :class:`CaseError` for an empty id or prompt, or an image that is not (C, H, W) with C = 1 or 3,
    finite and in [0, 1] (never clipped or rescaled: the certificate is about these pixels). Two cases are equal
    (``==``, and hash alike) when their id, expected outcome, prompt and exact pixels are; ``meta`` is not compared.
    A :class:`LazyImage` (as :func:`load_cases` makes for a dataset's rows) is read on first use of ``image`` (or of
    what reads it: ``shape``, ``content_hash``, ``==``), and the same checks then raise; ``str`` and ``id`` never read it.
    """

    id: str
    prompt: str
    image: np.ndarray = field(repr=False)
    expected: str | None = None
    meta: dict = field(default_factory=dict, repr=False, compare=False)
    where: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise CaseError(f"id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise CaseError(f"case {self.id!r}: prompt is empty; a requirement needs the user's text to certify")
        if isinstance(self.image, LazyImage):
            object.__setattr__(self, "_lazy", self.image)
            object.__delattr__(self, "image")  # __getattr__ reads it on first use
            return
        object.__setattr__(self, "image", _as_chw(self.image, self.id))
        self.image.setflags(write=False)

    def __getattr__(self, name: str):
        """``image`` of a case made with a :class:`LazyImage`: its pixels, read (or taken from the last read) now."""
        lazy = self.__dict__.get("_lazy") if name == "image" else None
        if lazy is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return _lazy_pixels(lazy, self.id)

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        """Same id, expected outcome, prompt and pixels (by :attr:`content_hash`); ``meta`` is not compared."""
        if other is self:
            return True
        if not isinstance(other, Case):
            return NotImplemented
        return (self.id, self.expected) == (other.id, other.expected) and self.content_hash == other.content_hash

    def __hash__(self) -> int:
        """Consistent with ``==``: from the id and :attr:`content_hash`."""
        return hash((self.id, self.content_hash))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the image: the space the certified l2 radius is measured in."""
        return tuple(self.image.shape)  # type: ignore[return-value]

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of the prompt and the exact pixels (and shape): what the certificate is about. The same pixels
        give the same hash however they were read (a PNG file, its bytes in a parquet row, an array); computed once."""
        h = hashlib.sha256()
        h.update(self.prompt.encode("utf-8"))
        h.update(repr(self.image.shape).encode())
        h.update(np.ascontiguousarray(self.image, dtype=np.float32).tobytes())
        return h.hexdigest()
