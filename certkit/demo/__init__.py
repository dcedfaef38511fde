"""The embedded default: a synthetic interaction-only safety world and two small trained models.

``load_guard()`` and ``load_assistant()`` load the shipped weights through the same adapters a user's
model goes through, after checking every file against ``weights/manifest.json``. Regenerate the weights
with ``python -m certkit.demo.train``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..testdata import file_digest

__all__ = ["WEIGHTS", "WeightsError", "verify", "load_guard", "load_assistant", "manifest"]

WEIGHTS = Path(__file__).parent / "weights"
_REGENERATE = "regenerate them with `python -m certkit.demo.train` (or reinstall certkit)"


class WeightsError(RuntimeError):
    """The shipped demo weights are missing or do not match their manifest."""


def manifest(directory: Path | str = WEIGHTS) -> dict:
    """The parsed ``manifest.json`` of a weights folder (file hashes, recipe, metrics), unchecked;
    :class:`WeightsError` where it is missing or not JSON."""
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise WeightsError(f"demo weights manifest {path} is missing; {_REGENERATE}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"demo weights manifest {path} is not valid JSON ({exc}); {_REGENERATE}") from None


def verify(directory: Path | str = WEIGHTS, part: str | None = None) -> dict:
    """Check every file listed in the manifest (only those under ``part/`` if given) against its SHA-256 and return
    the manifest; :class:`WeightsError` naming the first file missing or changed, or a missing or broken manifest."""
    directory = Path(directory)
    data = manifest(directory)
    for name, expected in data["files"].items():
        if part is not None and not name.startswith(part + "/"):
            continue
        path = directory / name
        if not path.is_file():
            raise WeightsError(f"demo weight file {path} is missing; {_REGENERATE}")
        actual = file_digest(path)
        if actual != expected:
            raise WeightsError(f"demo weight file {path} does not match its manifest hash "
                               f"(expected {expected[:12]}..., got {actual[:12]}...); {_REGENERATE}")
    return data


def load_guard(directory: Path | str = WEIGHTS, device=None, batch_size: int = 512):
    """The demo guard as a :class:`certkit.models.TorchClassifier` (labels ``safe`` / ``unsafe``, word tokens, mask
    id 0), its files verified first (:class:`WeightsError` otherwise)."""
    from ..models import TorchClassifier
    from .models import GUARD_LABELS, DemoGuard, WordTokenizer

    verify(directory, "guard")
    tok = WordTokenizer()
    module = DemoGuard.from_pretrained(Path(directory) / "guard")
    return TorchClassifier(module, GUARD_LABELS, tok, vocab_size=tok.vocab_size, special_ids=tok.special_ids, mask_id=0,
                           device=device, batch_size=batch_size, name="certkit-demo-guard")


def load_assistant(directory: Path | str = WEIGHTS, device=None, batch_size: int = 128, max_new_tokens: int = 6):
    """The demo assistant (a tiny LLaVA) as a :class:`certkit.models.VisionLanguageModel` generating up to
    ``max_new_tokens`` tokens, its files verified first (:class:`WeightsError` otherwise)."""
    from ..models import VisionLanguageModel

    verify(directory, "assistant")
    return VisionLanguageModel.from_pretrained(Path(directory) / "assistant", device=device, batch_size=batch_size,
                                                   max_new_tokens=max_new_tokens)
