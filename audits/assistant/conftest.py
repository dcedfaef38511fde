import pytest

from certkit import demo
from certkit.demo.train import answer_oracle


@pytest.fixture(scope="session")
def certkit_model():
    return demo.load_assistant(batch_size=64)


@pytest.fixture(scope="session")
def certkit_oracle():
    return answer_oracle()  # the answer's robot action, "refuse", or unparseable
