"""Text from results (prompts, case ids, test ids, error messages) as a page may show it.

Such text is data from the audited run and may be hostile or simply odd: it is HTML-escaped, every control
character (NUL, C0 and C1, line and paragraph separators) and every bidirectional formatting character (the
embeddings, overrides and isolates that can make ``evil.exe`` read as ``exe.live``) is shown as a visible
``<U+202E>`` marker instead of acting, the whole is isolated from the surrounding text (``<bdi>``) so that right-to-left
text inside cannot reorder the page, and long text is cut at a bound with the count of what was left out.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# C0 controls but tab and newline, DEL, C1 controls, LRM/RLM/ALM, LS/PS, the bidi embeddings/overrides/isolates, BOM
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def marked(text: str) -> str:
    """``text`` with each invisible or reordering character replaced by ``<U+XXXX>`` (plain text, not yet escaped)."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def visible(text, limit: int | None = None, isolate: bool = True) -> Markup:
    """HTML for untrusted ``text``: escaped, invisible characters marked, bidi-isolated, cut after ``limit`` characters.
    ``isolate=False`` where the element isolates already (the report's table cells are ``unicode-bidi: isolate``)."""
    if text is None:
        return Markup("")
    text = str(text)
    cut = ""
    if limit is not None and len(text) > limit:
        cut = f"… ({len(text) - limit:,} more characters)"
        text = text[:limit]
    shown = escape(marked(text))
    shown = Markup(re.sub(r"&lt;U\+([0-9A-F]{4})&gt;", r'<span class="cc">&lt;U+\1&gt;</span>', str(shown)))
    tail = Markup(f'<span class="cut">{escape(cut)}</span>') if cut else Markup("")
    return Markup("<bdi>") + shown + tail + Markup("</bdi>") if isolate else shown + tail

