"""How the report shows numbers so that they never read against the verdict: bounds rounded the unflattering way
(p_A lower down, p* up), as many digits as keep a pair's true order, and the margin p_A lower - p* with its sign."""

from __future__ import annotations

import math

from ..certificate import from_json_float

__all__ = ["fmt", "rounded", "number", "shown_pair", "margin_text", "margin_of"]


def fmt(x, digits=4) -> str:
    """A value as the report prints it: ``digits`` significant digits for a float, ``∞`` / ``none`` for infinite radii,
    ``–`` for None, anything else as it is."""
    if x is None:
        return "–"
    x = from_json_float(x)
    if isinstance(x, str):
        return x
    if x == math.inf:
        return "∞"
    if x == -math.inf:
        return "none"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def rounded(x, direction: str, digits: int = 4) -> str:
    """``digits`` significant digits, rounded ``down`` or ``up`` (never the flattering way); exact values stay as they are."""
    x = from_json_float(x)
    if x is None or isinstance(x, str):
        return "–" if x is None else str(x)
    if not math.isfinite(x):
        return "∞" if x > 0 else "none"
    if x == 0 or float(f"{x:.{digits}g}") == x:
        return f"{x:.{digits}g}"
    scale = 10 ** (digits - 1 - math.floor(math.log10(abs(x))))
    value = (math.floor if direction == "down" else math.ceil)(x * scale) / scale
    return f"{value:.{digits}g}"


def number(x):
    """The value as a float or int, or None when it is not a number (a string, a bool, None)."""
    x = from_json_float(x)
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def shown_pair(lower, p_star) -> tuple[str, str]:
    """The p_A lower bound (rounded down) and p* (rounded up) as the report shows them, with four significant digits or
    as many more (up to 17) as it takes for the shown pair to keep the true order: a lower bound at or above p* never
    reads below it. Guarantee: ``float(a) <= lower`` and ``float(b) >= p_star``, and ``lower >= p_star`` implies
    ``float(a) >= float(b)`` (equal values are shown equal)."""
    lo, ps = number(lower), number(p_star)
    if lo is None or ps is None or not (math.isfinite(lo) and math.isfinite(ps)):
        return rounded(lower, "down"), rounded(p_star, "up")
    if lo == ps:
        return rounded(lo, "down"), rounded(lo, "down")
    for digits in range(4, 18):
        a, b = rounded(lo, "down", digits), rounded(ps, "up", digits)
        if (float(a) >= float(b)) == (lo >= ps):
            return a, b
    return repr(lo), repr(ps)


def margin_text(margin) -> str:
    """The margin p_A lower - p* with its sign, rounded down (so it never reads larger than it is, and a nonzero margin
    never reads as zero): four decimals from 0.001 up, else two significant digits in scientific form; exactly zero
    reads ``at p*``; None reads ``–``."""
    m = number(margin)
    if m is None or math.isnan(m):
        return "–"
    if m == 0:
        return "at p*"
    if not math.isfinite(m):
        return "+∞" if m > 0 else "−∞"
    sign = "+" if m > 0 else "−"
    a = abs(m)
    toward = math.floor if m > 0 else math.ceil  # the magnitude down when positive, up when negative: m rounded down
    if a >= 1e-3:
        return f"{sign}{toward(a * 1e4) / 1e4:.4f}"
    exponent = math.floor(math.log10(a))
    mantissa = toward(round(a / 10 ** exponent * 10, 9)) / 10
    if mantissa >= 10:  # a / 10**exponent can land a hair above 10 in floating point
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{sign}{mantissa:.1f}e{exponent:+03d}"


def margin_of(c: dict):
    """A certificate's margin p_A lower - p*: the record's own ``margin`` where it has one (decided exactly), else the
    difference of the two floats; None where there is none (report mode, a missing number)."""
    if c.get("margin") is not None:
        return c["margin"]
    if c.get("mode") == "frontier":
        return None
    lo, ps = number(c.get("p_a_lower")), number(c.get("p_star"))
    return None if lo is None or ps is None else lo - ps
