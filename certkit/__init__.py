"""certkit: certify vision-language models against adversarial inputs with randomized smoothing.

The maths lives in :mod:`certkit.bounds` (Neyman–Pearson certificates) and :mod:`certkit.stats`
(confidence bounds, the sequential test, sample-size laws); the kernels in :mod:`certkit.noise`.
Every name here is imported on first use (``certkit.bounds``, ``from certkit import Smoothed``): the pytest plugin
loads with every pytest run of a project where certkit is installed, and must not pay for scipy or torch there.
"""

__version__ = "0.1.0"
__all__ = ["bounds", "noise", "stats", "Smoothed", "Case", "Certificate", "Requirement", "Noise", "load_cases", "__version__"]

_SUBMODULES = ("bounds", "noise", "stats")
_LAZY = {"Smoothed": "smoothing", "Case": "cases", "Certificate": "certificate", "load_cases": "casefiles", "Requirement": "requirement",
         "Noise": "requirement"}


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'certkit' has no attribute {name!r}")
