"""Noise sampling: rates, alphabet coverage, untouched positions, sigma, determinism."""

import numpy as np
import pytest
import torch

from certkit.noise import Gaussian, Mask, UniformReplace
from certkit.sampling import noisy_images, noisy_token_ids


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_uniform_replace_rate_and_alphabet_coverage():
    alphabet = torch.arange(10, 60)  # V = 50
    ids = torch.tensor([1, 2, 20, 21, 22, 23, 3])  # 1, 2, 3 are template tokens
    editable = torch.tensor([False, False, True, True, True, True, False])
    n, beta = 40_000, 0.25
    out = noisy_token_ids(ids, editable, UniformReplace(beta, 50), n, _gen(), alphabet)
    assert torch.equal(out[:, ~editable], ids[~editable].expand(n, -1))  # template never changes
    changed = out[:, editable] != ids[editable]
    rate = changed.float().mean().item()
    assert abs(rate - beta) < 4 * np.sqrt(beta * (1 - beta) / changed.numel())
    # replacements: never the original token, all inside the alphabet, uniform over the other 49
    col = out[:, 2][changed[:, 0]]
    assert not (col == 20).any()
    assert torch.isin(col, alphabet).all()
    counts = torch.bincount(col - 10, minlength=50).numpy()
    counts = np.delete(counts, 10)  # slot of token 20
    expected = col.numel() / 49
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 100  # 48 degrees of freedom: 99.99th percentile is about 95


def test_mask_rate_and_token():
    ids = torch.tensor([5, 6, 7, 8])
    editable = torch.tensor([False, True, True, True])
    out = noisy_token_ids(ids, editable, Mask(0.4), 20_000, _gen(1), mask_id=0)
    assert (out[:, 0] == 5).all()
    masked = out[:, 1:] == 0
    assert abs(masked.float().mean().item() - 0.4) < 0.01
    assert ((out[:, 1:] == ids[1:]) | masked).all()


def test_gaussian_noise_has_the_stated_sigma_and_centre():
    image = torch.full((3, 8, 8), 0.3)
    out = noisy_images(image, Gaussian(0.7), 2_000, _gen(2))
    noise = (out - image).flatten()
    assert abs(noise.mean().item()) < 0.01
    assert abs(noise.std().item() - 0.7) < 0.01


def test_gaussian_noise_is_image_plus_sigma_times_the_generators_draw_bit_for_bit():
    """The samples (and so every cached count) are image + sigma * N(0, I) of the generator's draw, exactly: computing it
    in place (issue 30.3) changed no bit. The image is not changed, nor is it a view of the result."""
    image = torch.rand(3, 7, 5)
    kept = image.clone()
    out = noisy_images(image, Gaussian(0.37), 4, _gen(11))
    draw = torch.randn((4, 3, 7, 5), generator=_gen(11), dtype=torch.float32)
    assert torch.equal(out, image.unsqueeze(0) + 0.37 * draw) and torch.equal(image, kept)
    out += 1
    assert torch.equal(image, kept)


def test_same_seed_same_samples_other_seed_other_samples():
    ids, editable, alphabet = torch.arange(20), torch.ones(20, dtype=torch.bool), torch.arange(100)
    a = noisy_token_ids(ids, editable, UniformReplace(0.5, 100), 64, _gen(7), alphabet)
    b = noisy_token_ids(ids, editable, UniformReplace(0.5, 100), 64, _gen(7), alphabet)
    c = noisy_token_ids(ids, editable, UniformReplace(0.5, 100), 64, _gen(8), alphabet)
    assert torch.equal(a, b) and not torch.equal(a, c)
    img = torch.rand(3, 4, 4)
    assert torch.equal(noisy_images(img, Gaussian(0.1), 5, _gen(3)), noisy_images(img, Gaussian(0.1), 5, _gen(3)))


def test_mask_needs_a_mask_id_and_uniform_needs_an_alphabet():
    ids, editable = torch.arange(4), torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="mask"):
        noisy_token_ids(ids, editable, Mask(0.3), 2, _gen())
    with pytest.raises(ValueError, match="alphabet"):
        noisy_token_ids(ids, editable, UniformReplace(0.3, 4), 2, _gen())


# --------------------------------------------------------------------------- tokens an attacker may place
# A tiny world: token ids 0..6, the replacement alphabet 2..5 (V = 4); 0 and 1 are special tokens, 6 is the mask
# token. The clean prompt (3, 4) is in the alphabet; an attacker may put ANY id 0..6 at an edited position.
VOCAB, ALPHABET, MASK_ID, CLEAN = 7, torch.arange(2, 6), 6, (3, 4)


def _sampler_law(kernel, token: int, n: int = 100_000) -> np.ndarray:
    """The sampler's empirical law of the noisy token at one editable position holding ``token``."""
    out = noisy_token_ids(torch.tensor([token]), torch.tensor([True]), kernel, n, _gen(token), ALPHABET, MASK_ID)
    return np.bincount(out[:, 0].numpy(), minlength=VOCAB) / n


def _law(kernel, token: int) -> np.ndarray:
    """The law the certificate's bound assumes, extended to every token (sampling.py's docstring)."""
    law = np.zeros(VOCAB)
    if isinstance(kernel, Mask):
        law[MASK_ID] += kernel.beta if token != MASK_ID else 1.0
        law[token] += 1 - kernel.beta if token != MASK_ID else 0.0
        return law
    alphabet = ALPHABET.numpy()
    if token in alphabet:
        law[alphabet] = kernel.beta / (len(alphabet) - 1)
        law[token] = 1 - kernel.beta
    else:
        law[alphabet] = 1 / len(alphabet)  # outside the alphabet: always resampled, uniformly
    return law


@pytest.mark.parametrize("kernel", [UniformReplace(0.3, 4), Mask(0.3)], ids=["uniform", "mask"])
def test_the_sampler_follows_the_law_for_every_token_an_attacker_can_place(kernel):
    for token in range(VOCAB):
        assert np.abs(_sampler_law(kernel, token) - _law(kernel, token)).max() < 0.006, token


@pytest.mark.parametrize("kernel", [UniformReplace(0.3, 4), Mask(0.3)], ids=["uniform", "mask"])
def test_no_model_falls_below_the_bound_at_any_one_token_edit(kernel):
    """Exact smoothed probabilities: for EVERY model on the noisy inputs' support and every input one edit away
    (any of the 7 ids, specials and the mask token included), P_adv[A] >= worst_case(p_A, d=1)."""
    from certkit.bounds import worst_case

    def joint(x):  # law of the noisy pair, as a (VOCAB * VOCAB,) vector
        return np.outer(_law(kernel, x[0]), _law(kernel, x[1])).reshape(-1)

    clean = joint(CLEAN)
    for pos in range(2):
        for t in range(VOCAB):
            adv_input = list(CLEAN)
            adv_input[pos] = t
            adv = joint(adv_input)
            support = np.flatnonzero((clean > 0) | (adv > 0))
            assert support.size <= 16
            # every labelling of the support: 2^|support| models, as rows of 0/1
            models = ((np.arange(2 ** support.size)[:, None] >> np.arange(support.size)) & 1).astype(float)
            p_a = models @ clean[support]
            p_adv = models @ adv[support]
            bound = worst_case(np.clip(p_a, 0, 1), text=kernel, edits=1)
            assert np.all(p_adv >= bound - 1e-12), (pos, t, float((bound - p_adv).max()))
