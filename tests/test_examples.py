"""The sharded-audit examples users copy (examples/sharded/): parsed, and checked against certkit's own options.

Each example serves the model on 127.0.0.1 on every node, runs one certkit shard per node with the same seed, N
shards for N nodes, keeps every shard's results even when its gate failed, and gates the release on `certkit merge`.
"""

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

from certkit.plugin.settings import RUN_OPTIONS, SETTINGS, opt_name
from certkit.plugin.sharding import Shard, parse_shard

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sharded"
CERTKIT_OPTIONS = {opt_name(name) for name in {**SETTINGS, **RUN_OPTIONS}}


def _options(command: str) -> dict:
    """The --certkit-* options of a pytest command line (value or True)."""
    words = shlex.split(command.replace("\\\n", " "))
    out = {}
    for i, word in enumerate(words):
        if word.startswith("--certkit-"):
            out[word] = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else True
    return out


def _check_shard_command(command: str) -> dict:
    options = _options(command)
    unknown = set(options) - CERTKIT_OPTIONS
    assert not unknown, f"options certkit does not have: {unknown}"
    assert "python -m pytest" in command and "--certkit-shard" in options and "--certkit-seed" in options
    assert "--certkit-json" in options
    return options


def test_github_actions_matrix_runs_n_shards_and_gates_on_the_merge():
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    audit, gate = workflow["jobs"]["audit"], workflow["jobs"]["gate"]
    shards = audit["strategy"]["matrix"]["shard"]
    assert audit["strategy"]["fail-fast"] is False
    steps = {step.get("name"): step for step in audit["steps"]}
    serve = next(s["run"] for s in audit["steps"] if "vllm serve" in s.get("run", ""))
    assert "--host 127.0.0.1" in serve and "--data-parallel-size" in serve and "--enable-scale-out" in serve
    run = next(s for s in audit["steps"] if "--certkit-shard" in s.get("run", ""))
    assert run["env"]["CERTKIT_SERVER_URL"].startswith("http://127.0.0.1:")
    options = _check_shard_command(run["run"].replace("${{ matrix.shard }}", "{K}"))
    spec = options["--certkit-shard"]
    total = int(spec.split("/")[1])
    assert shards == list(range(1, total + 1))
    assert {parse_shard(spec.format(K=k)) for k in shards} == {Shard(k, total) for k in shards}
    assert "{K}" in options["--certkit-json"]
    upload = next(s for s in audit["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "${{ matrix.shard }}" in upload["with"]["path"]
    assert gate["needs"] == "audit" and gate["if"] == "always()"
    merge = next(s["run"] for s in gate["steps"] if "certkit merge" in s.get("run", ""))
    assert re.search(r"certkit merge reports/shard-\*\.json -o \S+", merge)
    assert "Run certkit shard ${{ matrix.shard }} of 4" in steps


def test_kubernetes_indexed_job_runs_n_shards_and_a_merge_job_gates():
    audit, gate = yaml.safe_load_all((EXAMPLES / "kubernetes-indexed-job.yaml").read_text())
    spec = audit["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    total = spec["completions"]
    pod = spec["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: it ends when the shard does, so the Job completes
    serve = " ".join(sidecar["args"])
    assert "--host 127.0.0.1" in serve and "--data-parallel-size" in serve
    (certkit,) = pod["containers"]
    env = {e["name"]: e["value"] for e in certkit["env"]}
    assert env["CERTKIT_SERVER_URL"].startswith("http://127.0.0.1:") and {"MODEL_DIR", "MODEL_REVISION"} <= set(env)
    options = _check_shard_command(" ".join(certkit["args"]))
    assert options["--certkit-shard"] == f"auto/{total}"
    # every completion index names a different shard, and together they are all N
    assert {parse_shard(options["--certkit-shard"], {"JOB_COMPLETION_INDEX": str(i)}) for i in range(total)} == \
        {Shard(k, total) for k in range(1, total + 1)}
    assert "$((JOB_COMPLETION_INDEX+1))" in options["--certkit-json"]
    merge = " ".join(gate["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "certkit merge /results/shard-*.json -o /results/results.json" in merge


def test_the_served_conftest_defines_the_two_fixtures_from_the_environment():
    tree = ast.parse((EXAMPLES / "conftest.py").read_text())
    fixtures = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                and any("pytest.fixture" in ast.unparse(d) for d in node.decorator_list)}
    assert fixtures == {"certkit_model", "certkit_oracle"}
    source = (EXAMPLES / "conftest.py").read_text()
    for name in ("CERTKIT_SERVER_URL", "MODEL_DIR", "MODEL_REVISION"):
        assert f'os.environ["{name}"]' in source


@pytest.mark.parametrize("example", ["github-actions.yml", "kubernetes-indexed-job.yaml"])
def test_examples_name_one_seed_and_results_per_shard(example):
    text = (EXAMPLES / example).read_text()
    assert len(set(re.findall(r"--certkit-seed (\S+)", text))) == 1
