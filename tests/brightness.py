"""The brightness classifier the engine, cache, certificate and bad-input tests certify: a real model with known
answers (``bright`` iff the mean pixel exceeds 0.5; certkit.testing.BrightnessClassifier, the text ignored) over a
30-token alphabet that a prompt's words map into deterministically, the cases it is asked about, and its smoothed
model."""

import numpy as np

from certkit import Case, Smoothed
from certkit.models import TorchClassifier
from certkit.noise import Gaussian
from certkit.oracles import LabelOracle
from certkit.testing import BrightnessClassifier

VOCAB = 30


def tokenize(text):
    return [2 + sum(map(ord, w)) % (VOCAB - 2) for w in text.split()]  # ids 2..VOCAB-1; 0 = mask, 1 = special


def brightness_model(module=None, labels=("dark", "bright"), **kw):
    kw.setdefault("mask_id", 0)
    return TorchClassifier(module or BrightnessClassifier(), list(labels), kw.pop("tokenize", tokenize), vocab_size=VOCAB,
                           special_ids=[0, 1], **kw)


def case(value=0.9, prompt="hand the knife to the person", cid="c1"):
    return Case(cid, prompt, np.full((3, 8, 8), value, dtype=np.float32))


def bright_case(cid="c1", prompt="hand the knife to the person"):
    return Case(cid, prompt, np.full((3, 8, 8), 0.9, dtype=np.float32))


def _smoothed(seed=0):
    return Smoothed(brightness_model(), LabelOracle(["dark", "bright"]), image=Gaussian(0.25), seed=seed)
