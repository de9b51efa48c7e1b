import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the tools

import pytest  # noqa: E402
from chaos_fixtures import recorded_run  # noqa: E402


@pytest.fixture
def recorded(tmp_path):
    """A recorded chaos run that passes every check: (run, rows), a fresh copy per test."""
    return recorded_run(tmp_path)
