import pytest

from certkit import demo
from certkit.oracles import LabelOracle


@pytest.fixture(scope="session")
def certkit_model():
    return demo.load_guard()


@pytest.fixture(scope="session")
def certkit_oracle():
    return LabelOracle(["safe", "unsafe"])
