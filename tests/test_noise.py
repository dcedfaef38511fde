"""Noise kernels: validation, and the closed-form atoms against brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest

from certkit.noise import Gaussian, Mask, UniformReplace


def brute_force_atoms(token_prob, vocab_tokens, d):
    """Enumerate every noisy sequence over the d edited positions; group p(z|x'), p(z|x) by gamma."""
    clean_x = [0] * d  # clean tokens
    adv_x = [1] * d  # adversarial tokens
    atoms = {}
    for z in itertools.product(vocab_tokens, repeat=d):
        p = math.prod(token_prob(xi, zi) for xi, zi in zip(clean_x, z))
        q = math.prod(token_prob(xi, zi) for xi, zi in zip(adv_x, z))
        if p == 0 and q == 0:
            continue
        key = math.inf if p == 0 else (-math.inf if q == 0 else round(math.log(q / p), 9))
        c, a = atoms.get(key, (0.0, 0.0))
        atoms[key] = (c + p, a + q)
    keys = sorted(atoms)
    return np.array(keys), np.array([atoms[k][0] for k in keys]), np.array([atoms[k][1] for k in keys])


@pytest.mark.parametrize("vocab", [2, 3, 5])
@pytest.mark.parametrize("d", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_uniform_atoms_equal_brute_force(vocab, d, beta):
    kernel = UniformReplace(beta, vocab)

    def prob(x, z):
        return 1 - beta if z == x else beta / (vocab - 1)

    lg, clean, adv = brute_force_atoms(prob, range(vocab), d)
    atoms = kernel.atoms(d)
    assert np.allclose(atoms.log_gamma, lg, atol=1e-9)
    assert np.allclose(atoms.clean, clean, rtol=1e-12, atol=1e-15)
    assert np.allclose(atoms.adversarial, adv, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("d", [0, 1, 2, 3])
@pytest.mark.parametrize("beta", [0.2, 0.7])
def test_mask_atoms_equal_brute_force(d, beta):
    MASK = 2

    def prob(x, z):
        return beta if z == MASK else (1 - beta if z == x else 0.0)

    lg, clean, adv = brute_force_atoms(prob, [0, 1, MASK], d)
    atoms = Mask(beta).atoms(d)
    keep = (atoms.clean > 0) | (atoms.adversarial > 0)
    if d == 0:
        keep[:] = True
    assert np.array_equal(atoms.log_gamma[keep], lg)
    assert np.allclose(atoms.clean[keep], clean) and np.allclose(atoms.adversarial[keep], adv)


def test_uniform_atoms_huge_vocab_and_many_edits_are_finite_and_normalised():
    for vocab in (2, 32_000, 2**20):
        for d in (1, 8, 64):
            a = UniformReplace(0.25, vocab).atoms(d)
            assert np.all(np.isfinite(a.log_gamma)) and np.all(np.isfinite(a.clean))
            assert math.isclose(a.clean.sum(), 1.0, rel_tol=1e-12) and math.isclose(a.adversarial.sum(), 1.0, rel_tol=1e-12)
            assert np.all(np.diff(a.log_gamma) > 0)
            finite = a.clean > 1e-300
            # adversarial mass = gamma * clean mass, where representable
            ok = finite & (a.log_gamma < 700)
            assert np.allclose(a.adversarial[ok], np.exp(a.log_gamma[ok]) * a.clean[ok], rtol=1e-9, atol=1e-300)


def test_rho_below_one_orders_atoms_ascending():
    a = UniformReplace(0.8, 2).atoms(3)  # rho = 0.25 < 1
    assert np.all(np.diff(a.log_gamma) > 0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Gaussian(0), "sigma"),
        (lambda: Gaussian(-1.0), "sigma"),
        (lambda: Gaussian(float("nan")), "sigma"),
        (lambda: Gaussian(float("inf")), "sigma"),
        (lambda: UniformReplace(0.0, 10), "beta"),
        (lambda: UniformReplace(1.0, 10), "beta"),
        (lambda: UniformReplace(float("nan"), 10), "beta"),
        (lambda: UniformReplace(0.3, 1), "vocab_size"),
        (lambda: UniformReplace(0.3, 2.5), "vocab_size"),
        (lambda: Mask(1.5), "beta"),
        (lambda: Mask(-0.1), "beta"),
    ],
)
def test_bad_parameters_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make", [lambda: Gaussian("0.5"), lambda: UniformReplace("0.3", 10), lambda: Mask(True)])
def test_wrong_types_are_rejected(make):
    with pytest.raises(TypeError):
        make()


def test_kernels_are_frozen_hashable_values():
    assert UniformReplace(0.25, 100) == UniformReplace(0.25, 100)
    assert len({Gaussian(0.5), Gaussian(0.5), Mask(0.3)}) == 2
    with pytest.raises(AttributeError):
        Gaussian(0.5).sigma = 1.0  # type: ignore[misc]


def test_bad_edit_count_is_rejected():
    with pytest.raises(ValueError, match="edits"):
        UniformReplace(0.25, 10).atoms(-1)
