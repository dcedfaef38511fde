"""Shards: parsing the shard, the split by case, its balance and its independence of order."""

import random

import pytest

from certkit.plugin.sharding import Shard, assign, group_of, parse_shard, split

SUITE = '''
import numpy as np
import pytest
from certkit import Case

CASES = [Case(f"c{i}", "pick up the cube", np.full((3, 8, 8), 0.5 + i / 100, dtype=np.float32)) for i in range(12)]


@pytest.mark.certkit(beta=0.0, outcome="bright")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("radius", [0.05, 0.2, 0.4])
def test_bright(certkit, case, radius):
    certkit.assert_certified(case, radius=radius)


@pytest.mark.parametrize("case", CASES[:5], ids=str)
def test_frontier(certkit, case):
    certkit.frontier(case, outcome="bright", n=500)


def test_plain():
    pass
'''


@pytest.mark.parametrize("text, env, want", [
    ("2/4", {}, Shard(2, 4)),
    (" 1 / 1 ", {}, Shard(1, 1)),
    ("auto", {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "5"}, Shard(3, 5)),
    ("auto/3", {"JOB_COMPLETION_INDEX": "0"}, Shard(1, 3)),
    ("auto/3", {"CI_NODE_INDEX": "3"}, Shard(3, 3)),
    ("none", {}, None),
])
def test_a_shard_is_read_from_the_option_or_the_ci_variables(text, env, want):
    assert parse_shard(text, env) == want


@pytest.mark.parametrize("text, env, message", [
    ("0/3", {}, "shard 0 of 3 does not exist"),
    ("4/3", {}, "shard 4 of 3 does not exist"),
    ("2", {}, "not a shard"),
    ("auto", {"CI_NODE_INDEX": "1"}, "auto needs CI_NODE_INDEX and CI_NODE_TOTAL"),
    ("auto/4", {}, "auto/N needs JOB_COMPLETION_INDEX"),
    ("auto/4", {"JOB_COMPLETION_INDEX": "4"}, "shard 5 of 4 does not exist"),
    ("auto", {"CI_NODE_INDEX": "x", "CI_NODE_TOTAL": "2"}, "CI_NODE_INDEX='x' is not a whole number"),
])
def test_a_bad_shard_is_a_usage_error_that_names_it(text, env, message):
    with pytest.raises(pytest.UsageError, match="--certkit-shard") as exc:
        parse_shard(text, env)
    assert message in str(exc.value) and "K/N" in str(exc.value)


def test_assignment_ignores_the_order_groups_come_in_and_balances_a_large_suite():
    rng = random.Random(0)
    # 5,000 requirements on 1,700 cases: 1 to 5 requirements a case, each planned at 20 to 2,000 samples
    costs = {f"case:{i}": max(rng.randint(20, 2000) for _ in range(rng.randint(1, 5))) + 3 for i in range(1700)}
    keys = list(costs)
    rng.shuffle(keys)
    for total in (2, 3, 8, 16):
        a, b = assign(costs, total), assign({k: costs[k] for k in keys}, total)
        assert a == b
        loads = [sum(c for g, c in costs.items() if a[g] == k) for k in range(1, total + 1)]
        assert max(loads) <= 1.10 * sum(loads) / total, loads


def test_shards_cover_the_suite_once_keep_cases_together_and_do_not_depend_on_order(pytester):
    items = pytester.getitems(SUITE)
    assert len(items) == 12 * 3 + 5 + 1
    seen = {}
    for k in (1, 2, 3):
        kept, deselected, record = split(list(items), Shard(k, 3))
        shuffled = list(items)
        random.Random(k).shuffle(shuffled)
        assert {i.nodeid for i in split(shuffled, Shard(k, 3))[0]} == {i.nodeid for i in kept}
        assert len(kept) + len(deselected) == len(items) and record["assigned"] == sorted(i.nodeid for i in kept)
        for item in kept:
            assert item.nodeid not in seen
            seen[item.nodeid] = k
        assert record["total"] == 3 and record["suite_tests"] == len(items)
    assert set(seen) == {i.nodeid for i in items}
    by_case = {}
    for item in items:
        by_case.setdefault(group_of(item), set()).add(seen[item.nodeid])
    assert all(len(shards) == 1 for shards in by_case.values())
    assert group_of(items[0]).startswith("case:c") and group_of(items[-1]) == "test:" + items[-1].nodeid
