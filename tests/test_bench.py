"""The benchmark runner and the GPU benchmark's code path, run small on the CPU so they cannot rot unseen.
The figures themselves come from ``python -m bench`` (BENCHMARKS.md), never from timed assertions here."""

import subprocess
import sys

from bench import bench_llava7b


def test_llava7b_shape_is_llava_1_5_7b():
    vision, text = bench_llava7b.SHAPES["7b"]["v"], bench_llava7b.SHAPES["7b"]["t"]
    assert vision == (1024, 24, 16, 4096, 336, 14) and (336 // 14) ** 2 == 576  # ViT-L/14 at 336 px: 576 image tokens
    assert text == (4096, 32, 32, 11008)  # Llama-2-7B


def test_llava7b_runs_its_code_path_on_a_tiny_model(capsys):
    res = bench_llava7b.main(["--shape", "tiny", "--device", "cpu", "--batch", "8", "--n", "16", "--new-tokens", "2", "--repeats", "1"])
    assert set(res) == {"image-only", "hybrid"}
    for m in res.values():
        assert m["raw"] > 0 and m["smoothed"] > 0 and 0 < m["model_share"] <= 1
    assert "n=10,000" in capsys.readouterr().out


def test_runner_refuses_unknown_benchmarks():
    res = subprocess.run([sys.executable, "-m", "bench", "bounds", "nope"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown benchmark(s) ['nope']" in res.stderr


def test_llava7b_label_mode_runs_its_code_path_on_a_tiny_model():
    res = bench_llava7b.main(["--shape", "tiny", "--device", "cpu", "--batch", "8", "--n", "16", "--repeats", "1", "--mode", "label"])
    assert res and all(m["raw"] > 0 and m["smoothed"] > 0 for m in res.values())


def test_every_repeat_times_the_forward_passes_it_claims():
    """Issue 30.1: the second repeat of a smoothed pass read the first one's labels from the stream kept in memory (no
    model call at all: a 437x "speed-up"). Each repeat now draws a fresh stream, and the model ran on every sample."""
    from bench.bench_engine import throughput
    from certkit.noise import Gaussian
    from certkit.oracles import LabelOracle
    from tests.brightness import brightness_model

    res = throughput(brightness_model(batch_size=32), LabelOracle(["dark", "bright"]), {"image-only": (Gaussian(0.5), None)}, 64,
                     repeats=3)
    assert res["image-only"]["forward"] == [64, 64, 64]


def test_cases_bench_runs_small(capsys):
    """bench_cases' code path on 40 rows: every step measured in its own process, load_cases decoding nothing."""
    from bench import bench_cases

    res = bench_cases.main(["--rows", "40", "--side", "4"])
    assert res["load_cases, warm"]["rows"] == 40 and res["pytest --collect-only"]["exit"] == 0
    assert all(m["maxrss_mb"] > 0 for m in res.values()) and "pytest --collect-only" in capsys.readouterr().out


def test_overhead_bench_counts_the_forward_passes_of_both_arms():
    """bench_overhead on the tiny LLaVA: in both modes every repeat's bare pass ran its n samples, certify ran the forward
    passes its certificate claims (a new case per repeat, so none read a stream an earlier repeat drew), and the
    requirement needed about n samples, as the radius was chosen for."""
    from bench import bench_overhead

    res = bench_overhead.main(["--shape", "tiny", "--repeats", "2", "--n", "32", "--mode", "generate", "label"])
    assert [(r["mode"], r["kernels"]) for r in res] == [("generate", "image"), ("label", "image")]
    for r in res:
        assert [g["forward"] for g in r["rows"]] == [32, 32] and all(24 <= g["n"] <= 32 and g["status"] == "certified" for g in r["rows"])
        assert all(g["bare"] > 0 and g["certify_cpu"] > 0 for g in r["rows"]) and r["median_ratio_cpu"] > 0
