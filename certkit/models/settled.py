"""The settled part of a generation so far: the text every longer generation's decode begins with.

An oracle may stop a generation only on text the finished answer will still begin with, and ``decode(ids[:k])`` need
not be a prefix of ``decode(ids)``: byte-level decoders render an incomplete UTF-8 tail as U+FFFD, byte fallback
renders a whole run of byte tokens as U+FFFD until it is valid UTF-8, a right ``Strip`` cuts the end of the whole
text, and ``clean_up_tokenization_spaces`` deletes a space that precedes a later ``.``, ``n't``... :class:`SettledText`
reads the tokenizer's decoder chain and, for the chains whose behaviour is proved below, returns a prefix of
``decode(ids[:k])`` that is a prefix of ``decode(ids[:k] + t)`` for every ``t``; for any other tokenizer
:func:`settled_text` returns None and generation is never stopped early (the exact fallback).

Why each allowed part of the chain keeps prefixes (``tokenizers`` decodes the non-skipped tokens' strings with the
decoder chain; transformers' ``TokenizersBackend._decode`` then optionally cleans up spaces):

* no decoder: the tokens joined with spaces; ``Metaspace`` and ``Replace`` (before the tokens are fused): each
  token mapped on its own (Metaspace treats the first token alone specially): a longer list only adds text at the end.
* ``ByteFallback``: a run of ``<0xNN>`` tokens is decoded together, as UTF-8 or one U+FFFD per byte, once a
  non-byte token or the end closes it; so the tokens up to the last non-byte token decode the same in any extension,
  and the trailing run of byte tokens is left out of the settled text.
* ``ByteLevel`` and ``Fuse`` join everything into one string (ByteLevel via a lossy UTF-8 decode of all the bytes, in
  which an incomplete tail of at most 3 bytes becomes U+FFFD and later bytes can complete it): 3 characters withheld
  for ByteLevel; after a fusing decoder only ``Strip`` is allowed, whose ``stop`` characters cut from the end are
  withheld too (its ``start`` cut is at the text's start, which every extension shares).
* clean-up of tokenization spaces (where the tokenizer applies it): 10 successive ``str.replace`` calls with
  patterns of at most 4 characters, each deleting characters inside its match. Matches that start at least 3
  characters before the point where the two texts may differ are the same in both, so each call moves that point at
  most 3 characters to the left: 30 more characters withheld.
"""

from __future__ import annotations

import json

__all__ = ["SettledText", "settled_text"]

#: characters withheld for the lossy UTF-8 decode of a byte-level decoder (an incomplete sequence is at most 3 bytes,
#: which lossy decoding renders as at most 3 characters)
BYTE_LEVEL_TAIL = 3
#: characters withheld where clean-up of tokenization spaces applies (10 replacements, 3 characters each)
CLEANUP_TAIL = 30
#: decoders that map each token on its own (allowed before the tokens are fused)
_PER_TOKEN = {"Metaspace", "Replace"}


class SettledText:
    """``settled(ids)``: a prefix of ``tokenizer.decode(ids, skip_special_tokens=True)`` that is also a prefix of
    ``tokenizer.decode(ids + more, skip_special_tokens=True)`` for every list of ids ``more`` (see the module docstring
    for the proof per decoder). Build it with :func:`settled_text`, which returns None for tokenizers it cannot prove."""

    def __init__(self, tokenizer, tail: int, byte_fallback: bool, special_ids: frozenset[int]):
        self.tokenizer = tokenizer
        self.tail = int(tail)
        self.byte_fallback = bool(byte_fallback)
        self.special_ids = special_ids
        self._byte_token: dict[int, bool] = {}

    def _is_byte(self, token_id: int) -> bool:
        """Whether ByteFallback may read the token as a byte: any 6-character ``<0x..>`` string (a superset of the tokens
        it reads as bytes, so the cut below lands on a token that surely closes a run)."""
        known = self._byte_token.get(token_id)
        if known is None:
            token = self.tokenizer.backend_tokenizer.id_to_token(token_id) or ""
            known = self._byte_token[token_id] = len(token) == 6 and token.startswith("<0x") and token.endswith(">")
        return known

    def _closed(self, ids) -> list[int]:
        """``ids`` less a trailing run of byte tokens (and skipped specials) where ByteFallback may still rewrite it."""
        ids = list(ids)
        if self.byte_fallback:
            end = len(ids)
            while end and (ids[end - 1] in self.special_ids or self._is_byte(ids[end - 1])):
                end -= 1
            ids = ids[:end]
        return ids

    def _cut(self, text: str) -> str:
        return text[: max(0, len(text) - self.tail)] if self.tail else text

    def __call__(self, ids) -> str:
        """The settled text of the generated ``ids`` (a sequence of ints); see the class docstring."""
        return self._cut(self.tokenizer.decode(self._closed(ids), skip_special_tokens=True))

    def batch(self, rows) -> list[str]:
        """``[self(ids) for ids in rows]``, decoded in one ``batch_decode`` call."""
        texts = self.tokenizer.batch_decode([self._closed(ids) for ids in rows], skip_special_tokens=True)
        return [self._cut(text) for text in texts]


def _decoder_chain(tokenizer) -> list[dict] | None:
    decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder")
    if decoder is None:
        return []
    if decoder.get("type") == "Sequence":
        return list(decoder.get("decoders") or [])
    return [decoder]


def settled_text(tokenizer) -> SettledText | None:
    """The :class:`SettledText` of ``tokenizer``, or None where its decode is not one this module proves prefix-stable:
    not transformers' ``TokenizersBackend`` decode (a slow tokenizer, or a class that overrides decoding), or a decoder
    chain with a part or an order not listed in the module docstring."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - another transformers layout: not proved
        return None
    cls = type(tokenizer)
    if not isinstance(tokenizer, TokenizersBackend) or cls._decode is not TokenizersBackend._decode \
            or cls.decode is not PreTrainedTokenizerBase.decode or cls.batch_decode is not PreTrainedTokenizerBase.batch_decode:
        return None
    chain = _decoder_chain(tokenizer)
    if chain is None:
        return None
    tail, fused, byte_fallback = 0, False, False
    for part in chain:
        kind = part.get("type")
        if kind in _PER_TOKEN and not fused:
            continue
        if kind == "ByteFallback" and not fused:
            byte_fallback = True
        elif kind == "ByteLevel":
            fused, tail = True, tail + BYTE_LEVEL_TAIL
        elif kind == "Fuse":
            fused = True
        elif kind == "Strip":
            tail += int(part.get("stop", 0) or 0)
        else:
            return None
    cleanup = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    if cleanup and type(tokenizer.backend_tokenizer.model).__name__ == "BPE" and \
            not getattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False):
        cleanup = False  # TokenizersBackend._decode skips the clean-up for BPE models (it says so in a warning)
    if cleanup:
        tail += CLEANUP_TAIL
    added = tokenizer.backend_tokenizer.get_added_tokens_decoder()
    special = frozenset(int(i) for i, token in added.items() if getattr(token, "special", False))
    return SettledText(tokenizer, tail, byte_fallback, special)
