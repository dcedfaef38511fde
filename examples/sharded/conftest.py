"""The conftest.py of a sharded audit against a served model: each shard talks to the server on its own node.

CERTKIT_SERVER_URL names that server (the examples set it to http://127.0.0.1:8000); MODEL_DIR is the model's folder
(its processor and config: certkit encodes every case locally, and sends token ids to vLLM); MODEL_REVISION names
the served weights in every certificate and in the count cache's key.
"""

import os

import pytest

from certkit.models import ServedVLM
from certkit.oracles import KeywordOracle


@pytest.fixture(scope="session")
def certkit_model():
    model = ServedVLM(os.environ["CERTKIT_SERVER_URL"], os.environ["MODEL_DIR"], revision=os.environ["MODEL_REVISION"],
                      protocol="vllm", processor=os.environ["MODEL_DIR"], batch_size=256, concurrency=64)
    yield model
    model.close()


@pytest.fixture(scope="session")
def certkit_oracle():
    return KeywordOracle.refusal()
