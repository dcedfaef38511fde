"""Adaptive attacks (random and greedy token edits, PGD on the image against the smoothed guard) stay at or
above the certified floor. The full run over every unsafe demo case is ``python -m bench.bench_attacks``."""

from bench.bench_attacks import run


def test_attacks_on_the_demo_guard_respect_the_certificate():
    rows = run(budgets=((2, 0.25),), n_cert=1000, n_eval=1000, limit=1)
    assert rows and all(r["holds"] for r in rows)
    assert rows[0]["attacked_p_unsafe"] < rows[0]["clean_p_a_lower"]  # the attack does bite
