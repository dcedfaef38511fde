#!/usr/bin/env bash
# One command for a GPU machine (issue 22.4): the VLM family matrix on CUDA, bench_llava7b in generation and label
# mode with the MFU, the out-of-memory back-off on the 7B shape, two xdist workers on one GPU (22.5), and the demo
# audit run twice without the cache (the same counts for the same seed on the same GPU, 22.1), printed as Markdown
# for BENCHMARKS.md. Each step has its own time limit; the limits add up to 8 minutes (one H200 was the target).
#
#   scripts/gpu_check.sh --fetch-wheels   here, with network: download the project's transformers and its
#                                         dependencies for the GPU machine's Python 3.12 into build/gpu-wheels
#                                         (an ignored folder: carry it to the machine)
#   scripts/gpu_check.sh                  on the GPU machine: install those wheels into /tmp/certkit-site (where
#                                         the folder is there), then run every step on cuda
#   scripts/gpu_check.sh --tiny           anywhere: the same steps on the CPU with the tiny bench shape (a smoke
#                                         run of this script; the figures mean nothing)
#
# The figures go to stdout and, with every step's full log, to $GPU_CHECK_OUT (default build/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python  # the checkout's venv where it has one
WHEELS=$ROOT/build/gpu-wheels
LOGS=${GPU_CHECK_OUT:-$ROOT/build/gpu-check}
MODE=gpu
case "${1:-}" in
  "") ;;
  --tiny) MODE=tiny ;;
  --fetch-wheels) MODE=fetch ;;
  *) echo "usage: scripts/gpu_check.sh [--tiny | --fetch-wheels]" >&2; exit 2 ;;
esac

if [ "$MODE" = fetch ]; then
  # the versions this checkout runs with (its .venv), for CPython 3.12 on manylinux x86-64
  VENV_PY=${VENV_PY:-$ROOT/.venv/bin/python}
  mkdir -p "$WHEELS"
  for name in transformers huggingface_hub tokenizers httpx2 httpcore2 truststore tomlkit kernels click hf-xet idna regex num2words; do
    version=$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) \
      || { echo "gpu_check: $name is not installed in $VENV_PY; install the project first (make install)" >&2; exit 1; }
    "$VENV_PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "$name==$version" || exit 1
  done
  du -sh "$WHEELS"
  exit 0
fi

mkdir -p "$LOGS"
if [ "$MODE" = gpu ]; then
  DEVICE=cuda SHAPE=7b BATCH=64 N=256 NEW=16 OOM_BATCH=512 WORKERS=4
  if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "gpu_check: torch sees no CUDA GPU here; run it on the GPU machine, or scripts/gpu_check.sh --tiny for a smoke run" >&2
    exit 1
  fi
  if [ -d "$WHEELS" ]; then  # the project's transformers and its dependencies, over the machine's own packages
    SITE=/tmp/certkit-site
    "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl || exit 1
    # certkit's entry points (the pytest plugin, the console script) without installing it: a hand-made dist-info
    mkdir -p "$SITE/certkit-0.0.0.dist-info"
    printf 'Metadata-Version: 2.1\nName: certkit\nVersion: 0.0.0\n' > "$SITE/certkit-0.0.0.dist-info/METADATA"
    printf '[pytest11]\ncertkit = certkit.plugin\n\n[console_scripts]\ncertkit = certkit.cli:main\n' \
      > "$SITE/certkit-0.0.0.dist-info/entry_points.txt"
    export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  fi
else
  DEVICE=cpu SHAPE=tiny BATCH=8 N=16 NEW=2 OOM_BATCH=16 WORKERS=2
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export CERTKIT_TEST_DEVICE=$DEVICE HF_HUB_OFFLINE=1

ROWS=()
# step NAME LIMIT_S COMMAND...: run it with a time limit, keep its log, add a row to the summary
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc
  echo "== $name: $*" >&2
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  local took=$((SECONDS - t0)) result
  case $rc in
    0) result=ok ;;
    124) result="timed out after ${limit} s" ;;
    *) result="failed (exit $rc)" ;;
  esac
  ROWS+=("| $name | \`$*\` | $result | $took |")
  tail -n 3 "$LOGS/$name.log" >&2
}

PYVERSIONS=$("$PY" -c "import torch, transformers; print(f'torch {torch.__version__}, transformers {transformers.__version__}')")
GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")

# the demo audit twice, same seed, no cache: the per-requirement counts must be the same (exit 1 where not)
SAME_COUNTS='
import json, sys
runs = [{r["nodeid"]: [(c["status"], c["n"], c["successes"]) for c in r.get("certificates") or []]
         for r in json.load(open(path))["results"]} for path in sys.argv[1:3]]
differ = sorted(k for k in runs[0].keys() | runs[1].keys() if runs[0].get(k) != runs[1].get(k))
print(f"two runs, seed 0, no cache: {len(runs[0])} requirements, {len(runs[0]) - len(differ)} with the same status, n and successes"
      + (f"; different: {differ[:5]}" if differ else ""))
sys.exit(1 if differ else 0)'
demo_twice() {
  local run
  for run in a b; do
    "$PY" -m certkit audit -q -p no:cacheprovider --certkit-cache-dir none --certkit-json "$LOGS/demo-$run.json" \
      --certkit-report none --certkit-history none || return
  done
  "$PY" -c "$SAME_COUNTS" "$LOGS/demo-a.json" "$LOGS/demo-b.json"
}
export -f demo_twice  # `timeout` runs programs, not functions: the step runs it in a child bash
export PY LOGS SAME_COUNTS

step families 130 "$PY" -m pytest -p no:cacheprovider -q -n "$WORKERS" tests/models/test_families.py --junitxml="$LOGS/families.xml"
step bench-generate 100 "$PY" -m bench.bench_llava7b --shape "$SHAPE" --device "$DEVICE" --batch "$BATCH" --n "$N" --new-tokens "$NEW" --repeats 1
step bench-label 60 "$PY" -m bench.bench_llava7b --shape "$SHAPE" --device "$DEVICE" --batch "$BATCH" --n "$N" --repeats 1 --mode label
step oom-backoff 60 "$PY" -m bench.bench_llava7b --shape "$SHAPE" --device "$DEVICE" --new-tokens "$NEW" --oom-batch "$OOM_BATCH"
step two-workers-one-gpu 40 "$PY" -m pytest -p no:cacheprovider -q tests/plugin/test_devices.py -k two_workers_on_one_gpu
step demo-audit 90 bash -c demo_twice

echo
echo "### GPU check: $GPU, $PYVERSIONS (scripts/gpu_check.sh${1:+ $1}, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
echo
echo "| step | command | result | seconds |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Family matrix on $DEVICE (tests/models/test_families.py; . passed, F failed, E error, s skipped):"
echo
"$PY" - "$LOGS/families.xml" <<'EOF'
import re
import sys
import xml.etree.ElementTree as ET

try:
    cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
except (OSError, ET.ParseError) as exc:
    sys.exit(f"no family results: {exc}")
cells, tests, other = {}, [], []
for case in cases:
    kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
    mark = {"passed": ".", "failure": "F", "error": "E", "skipped": "s"}[kind]
    m = re.fullmatch(r"(test_\w+)\[(\w+)\]", case.get("name", ""))
    if not m:
        other.append(f"{case.get('name')} {mark}")
        continue
    test, family = m.groups()
    if test not in tests:
        tests.append(test)
    cells.setdefault(family, {})[test] = mark
print("| family | " + " | ".join(t.removeprefix("test_")[:28] for t in tests) + " |")
print("|---" * (len(tests) + 1) + "|")
for family, row in cells.items():
    print(f"| {family} | " + " | ".join(row.get(t, "") for t in tests) + " |")
print()
print("other tests: " + ", ".join(other))
EOF
for name in families bench-generate bench-label oom-backoff two-workers-one-gpu demo-audit; do
  echo
  echo "#### $name"
  echo '```'
  case $name in
    families|two-workers-one-gpu) grep -E "passed|failed|error" "$LOGS/$name.log" | tail -n 1 ;;
    demo-audit) grep -E "passed|failed|error|two runs" "$LOGS/$name.log" | tail -n 3 ;;
    *) grep -vE "Warning|warn\(|^\s*$" "$LOGS/$name.log" | tail -n 8 ;;
  esac
  echo '```'
done
