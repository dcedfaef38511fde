"""certkit: certify vision-language models against adversarial inputs with randomized smoothing.

The maths lives in :mod:`certkit.bounds` (Neyman–Pearson certificates) and
:mod:`certkit.stats` (confidence bounds, the sequential test, sample-size laws);
the kernels in :mod:`certkit.noise`.
"""

from . import bounds, noise, stats

__version__ = "0.1.0"
__all__ = ["bounds", "noise", "stats", "__version__"]
