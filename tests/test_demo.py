"""The embedded default: the world, training, the shipped weights and their manifest."""

import json
import shutil

import numpy as np
import pytest

from certkit import demo
from certkit.demo import cases as demo_cases
from certkit.demo import train, world


def test_danger_lives_only_in_the_combination():
    for obj in world.OBJECTS:
        for prompt in world.INSTRUCTIONS:
            assert world.is_unsafe(obj, prompt) == (obj in world.BLADES and prompt in world.DANGEROUS)
    # each modality alone is safe somewhere: every blade has a safe instruction, every aimed instruction a safe object
    assert all(any(not world.is_unsafe(b, p) for p in world.INSTRUCTIONS) for b in world.BLADES)
    assert all(any(not world.is_unsafe(o, p) for o in world.OBJECTS) for p in world.DANGEROUS)
    # prompts never name the object: the text cannot tell a knife from a ball
    assert not any(o in p.split() for o in world.OBJECTS for p in world.INSTRUCTIONS)


def test_samples_are_seeded_valid_and_balanced():
    a = [world.sample(np.random.default_rng(5)) for _ in range(3)]
    b = [world.sample(np.random.default_rng(5)) for _ in range(3)]
    assert all(np.array_equal(x.image, y.image) and x.prompt == y.prompt for x, y in zip(a, b))
    rng = np.random.default_rng(0)
    batch = [world.sample(rng) for _ in range(2000)]
    assert all(s.image.shape == (3, 32, 32) and s.image.dtype == np.float32 and 0 <= s.image.min() and s.image.max() <= 1 for s in batch)
    share = np.mean([s.unsafe for s in batch])
    assert 0.45 < share < 0.55
    assert all(s.answer == (world.REFUSAL if s.unsafe else world.INSTRUCTIONS[s.prompt]) for s in batch)


def test_audit_cases_are_fixed_and_cover_every_kind(tmp_path):
    path = demo_cases.write_cases(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["kind"] for r in rows} == set(demo_cases.KINDS)
    assert len({r["id"] for r in rows}) == len(rows) == sum(demo_cases.KINDS.values())
    assert all((tmp_path / r["image"]).is_file() for r in rows)
    # the committed set is the one the generator writes
    committed = (demo.WEIGHTS.parent.parent.parent / "audits" / "data" / "cases.jsonl").read_text()
    assert committed == path.read_text()


def test_quick_training_reaches_its_stated_accuracy(tmp_path):
    manifest = train.train_all(tmp_path, train.QUICK, log=lambda *_: None)
    assert manifest["metrics"]["guard"]["clean_accuracy"] >= 0.75
    assert manifest["metrics"]["assistant"]["clean_accuracy"] >= 0.4
    guard = demo.load_guard(tmp_path)
    assert guard.labels == ("safe", "unsafe")


def test_shipped_weights_match_their_manifest_and_accuracy():
    manifest = demo.verify()
    assert set(manifest["files"]) >= {"guard/model.safetensors", "assistant/model.safetensors", "assistant/config.json"}
    assert sum((demo.WEIGHTS / f).stat().st_size for f in manifest["files"]) < 8 * 2**20  # a few MB at most
    guard = demo.load_guard()
    metrics = train.evaluate_guard(guard.module, manifest["metrics"]["guard"]["held_out"], manifest["recipe"]["seed"] + 2)
    assert metrics["clean_accuracy"] == pytest.approx(manifest["metrics"]["guard"]["clean_accuracy"], abs=1e-6)
    assistant = demo.load_assistant(batch_size=64)
    quick = train.evaluate_assistant(assistant, 100, manifest["recipe"]["seed"] + 4)
    assert quick["clean_accuracy"] >= manifest["metrics"]["assistant"]["clean_accuracy"] - 0.08


def test_tampered_or_missing_weights_give_a_clear_error(tmp_path):
    copy = tmp_path / "weights"
    shutil.copytree(demo.WEIGHTS, copy)
    with open(copy / "guard" / "model.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(demo.WeightsError, match=r"guard/model.safetensors does not match its manifest hash.*python -m certkit.demo.train"):
        demo.load_guard(copy)
    (copy / "assistant" / "model.safetensors").unlink()
    with pytest.raises(demo.WeightsError, match=r"assistant/model.safetensors is missing.*python -m certkit.demo.train"):
        demo.load_assistant(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(demo.WeightsError, match="manifest.*is missing"):
        demo.verify(copy)
