"""certkit: certify vision-language models against adversarial inputs with randomized smoothing.

The maths lives in :mod:`certkit.bounds` (Neyman–Pearson certificates) and :mod:`certkit.stats`
(confidence bounds, the sequential test, sample-size laws); the kernels in :mod:`certkit.noise`.
The engine (:class:`Smoothed`, needing torch) is imported on first use, so the maths stays light.
"""

from . import bounds, noise, stats

__version__ = "0.1.0"
__all__ = ["bounds", "noise", "stats", "Smoothed", "Case", "Certificate", "Requirement", "Noise", "load_cases", "__version__"]

_LAZY = {"Smoothed": "smoothing", "Case": "cases", "Certificate": "certificate", "load_cases": "cases", "Requirement": "requirement",
         "Noise": "requirement"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'certkit' has no attribute {name!r}")
