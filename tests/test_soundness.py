"""Soundness through the full certify path (Smoothed.certify and .frontier on a real torch module whose
p_A is known exactly and set on each requirement's boundary). The 10,000-requirement run is
``python -m bench.bench_soundness`` (BENCHMARKS.md); this is its 300-requirement version."""

import math

from bench.bench_soundness import run


def test_false_certification_rate_at_the_boundary_is_at_most_alpha():
    res = run(count=300, alpha=0.05, n_max=1_000, n_fixed=500, seed=1)
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    assert res["sequential_false_rate"] <= limit
    assert res["fixed_false_rate"] <= limit
    assert sum(res["decisions"].values()) == 300
