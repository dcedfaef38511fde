"""Drawing the smoothing noise, in torch, on the model's device, from a seedable generator.

* Images: ``image + sigma * N(0, I)`` on float pixels in [0, 1], shape (C, H, W), at the case's
  resolution (the certified l2 radius is measured there). Noisy pixels are not clipped.
* Text: applied to token *ids* directly (no decode/re-encode round trip), at the positions of the
  user's prompt only (``editable``); chat-template and image tokens never change.
  ``UniformReplace``: each editable token of ``alphabet`` (a 1-D tensor of the ``V`` allowed ids, special
  tokens excluded) is kept w.p. ``1 - beta``, else replaced by a uniformly drawn *other* alphabet token.
  A token *outside* the alphabet (a special token, ``<unk>``, anything an attacker made the tokenizer
  produce) is always replaced by a uniform draw from the whole alphabet. That law is the average of the
  in-alphabet laws over all V tokens, so the smoothed model at an input holding such a token is an average
  of its values at inputs with in-alphabet tokens there: every certificate for d in-alphabet substitutions
  covers it.
  ``Mask``: each editable token becomes ``mask_id`` w.p. ``beta``, whatever the token. The Mask bound does
  not depend on the token's identity, and an attacker's typed mask token (always masked) is the
  post-processing "fresh token -> mask" of a fresh-token edit, which leaves the clean law unchanged, so the
  same bound covers it.

Seeds: every seed certkit derives (a case's stream, a chunk's text and image generators, a served sample's
request seed) comes from :func:`derive_seed`, a hash of named parts, so it does not depend on the process,
the machine or the order in which work ran.
"""

from __future__ import annotations

import hashlib

import torch

from .noise import Gaussian, Mask, UniformReplace

__all__ = ["derive_seed", "noisy_images", "noisy_token_ids", "alphabet_index"]


def derive_seed(*parts) -> int:
    """A seed in ``[0, 2**63)`` from any parts, by SHA-256 of their ``str`` forms: the same parts give the same seed
    in every process, on every machine and Python version (no ``hash()`` randomisation)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def noisy_images(image: torch.Tensor, kernel: Gaussian | None, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` noisy copies of ``image`` (C, H, W): shape (n, C, H, W), float32 on the image's device, not clipped;
    exact copies when ``kernel`` is None. The draws depend only on ``generator``'s state."""
    batch = image.to(torch.float32).unsqueeze(0).expand(n, *image.shape)
    if kernel is None:
        return batch.clone()
    noise = torch.randn(batch.shape, generator=generator, device=image.device, dtype=torch.float32)
    # in place: the same bits as batch + sigma * noise (one product, one sum) without two more image-sized tensors per
    # call, whose allocation cost more than the draw itself for a 3x336x336 image on the CPU (BENCHMARKS.md, issue 30.3)
    return noise.mul_(kernel.sigma).add_(batch)


def alphabet_index(alphabet: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Position of each id in the sorted, unique ``alphabet`` (-1 for ids outside it); the shape of ``ids``."""
    pos = torch.searchsorted(alphabet, ids)
    pos = pos.clamp(max=alphabet.numel() - 1)
    return torch.where(alphabet[pos] == ids, pos, torch.full_like(pos, -1))


def noisy_token_ids(
    ids: torch.Tensor,
    editable: torch.Tensor,
    kernel: UniformReplace | Mask | None,
    n: int,
    generator: torch.Generator,
    alphabet: torch.Tensor | None = None,
    mask_id: int | None = None,
) -> torch.Tensor:
    """``n`` noisy copies of the 1-D ``ids``: shape (n, L). Only positions where ``editable`` is True change.

    ``alphabet`` is sorted and unique, of size ``kernel.vocab_size``. For a certificate, the *clean* prompt's
    editable ids must all belong to it (the caller checks this once per case); noisy draws of any other input
    (an adversarial one) follow the law in the module docstring. Copies of ``ids`` when ``kernel`` is None or no
    position is editable. ValueError for a Mask kernel without ``mask_id`` or a UniformReplace kernel without
    ``alphabet``.
    """
    out = ids.unsqueeze(0).expand(n, ids.numel()).clone()
    if kernel is None:
        return out
    pos = torch.nonzero(editable, as_tuple=False).flatten()
    if pos.numel() == 0:
        return out
    flip = torch.rand((n, pos.numel()), generator=generator, device=ids.device) < kernel.beta
    if isinstance(kernel, Mask):
        if mask_id is None:
            raise ValueError("the Mask kernel needs the model's mask (or pad) token id")
        cols = out[:, pos]
        out[:, pos] = torch.where(flip, torch.full_like(cols, mask_id), cols)
        return out
    if alphabet is None:
        raise ValueError("the UniformReplace kernel needs the alphabet of allowed token ids")
    v = alphabet.numel()
    own = alphabet_index(alphabet, ids[pos]).unsqueeze(0)  # (1, P); -1 outside the alphabet
    # in the alphabet: uniform over the other V - 1 tokens (draw in [0, V - 2] and skip the token's own slot)
    other = torch.randint(0, v - 1, (n, pos.numel()), generator=generator, device=ids.device)
    other = other + (other >= own).to(other.dtype)
    # outside it: uniform over all V tokens, always
    anyone = torch.randint(0, v, (n, pos.numel()), generator=generator, device=ids.device)
    outside = own < 0
    replaced = torch.where(outside, alphabet[anyone], alphabet[other.clamp(max=v - 1)])
    out[:, pos] = torch.where(flip | outside, replaced, out[:, pos])
    return out
