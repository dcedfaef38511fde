"""Model adapters: what certkit needs from a model, and adapters for transformers VLMs, served VLMs and torch classifiers."""

from .base import EncodedCase, ModelAdapter, ModelError
from .http import ServerError
from .served import ServedVLM
from .torch_classifier import TorchClassifier
from .transformers_vlm import VisionLanguageGenerator, VisionLanguageModel

__all__ = ["EncodedCase", "ModelAdapter", "ModelError", "ServedVLM", "ServerError", "TorchClassifier", "VisionLanguageGenerator",
           "VisionLanguageModel"]
