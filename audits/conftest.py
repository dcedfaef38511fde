"""The demo audits. Project-wide certkit settings live in pyproject.toml ([tool.pytest.ini_options]
certkit_* keys); each audit folder's conftest.py provides the two fixtures certkit needs, as a user's
would: ``certkit_model`` (a model adapter, loaded once per xdist worker) and ``certkit_oracle``."""
