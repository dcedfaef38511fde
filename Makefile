# The README's two commands: `make audit` (the demo audit) and `make test` (the test suite).
# Both create .venv on first use: torch is installed first from its pinned CPU build (constraints.txt).
# `make test` also runs the VLM family matrix in .venv-tv: the families whose processors need torchvision
# (Qwen-VL, LLaVA-OneVision, SmolVLM, InternVL, Pixtral, Mistral 3) need a torch and a torchvision that
# match, and the only matching pair the registry has is torch 2.13.0's CUDA build (it runs on CPU).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TV := .venv-tv
TV_STAMP := $(TV)/.installed

.PHONY: install audit test test-suite test-families test-served bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# --isolated: skip the local CPU-only torch wheel, take the registry's torch 2.13.0 with its torchvision 0.28.0
$(TV_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(TV)
	$(TV)/bin/python -m pip install --quiet --isolated torch==2.13.0 torchvision==0.28.0
	$(TV)/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(TV_STAMP)

install: $(STAMP)

audit: $(STAMP)
	$(BIN)/python -m certkit audit

test: test-suite test-families

# -p randomly: the tests run in a random order, its seed printed in the header ("Using --randomly-seed=N");
# `pytest -p randomly --randomly-seed=N tests` replays that order; without -p randomly (pyproject.toml's addopts say
# -p no:randomly) pytest keeps the written order
test-suite: $(STAMP)
	$(BIN)/python -m pytest -n 2 -p randomly tests

test-families: $(TV_STAMP)
	CERTKIT_REQUIRE_TORCHVISION=1 $(TV)/bin/python -m pytest -n 2 -p no:cacheprovider tests/models/test_families.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TV) reports/.cache

# The served-model tests alone; with CERTKIT_VLLM_URL and CERTKIT_VLLM_MODEL set (scripts/vllm_cpu.sh), against live vLLM.
test-served: $(STAMP)
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider tests/models/test_served.py
