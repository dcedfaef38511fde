"""Model adapters: what certkit needs from a model, and adapters for transformers VLMs and torch classifiers."""

from .base import EncodedCase, ModelAdapter, ModelError
from .torch_classifier import TorchClassifier
from .transformers_vlm import VisionLanguageGenerator, VisionLanguageModel

__all__ = ["EncodedCase", "ModelAdapter", "ModelError", "TorchClassifier", "VisionLanguageGenerator", "VisionLanguageModel"]
