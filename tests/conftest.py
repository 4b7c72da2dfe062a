"""Fixtures shared by several test files (plain builders live in tests/helpers.py)."""

import pytest

from helpers import one_torch_thread


@pytest.fixture(scope="module")
def single_thread_torch(maze_tokens):
    """torch on one thread for the requesting module, set after that module's ``maze_tokens``
    fixture has built its mazes (see helpers.one_torch_thread). Use with
    ``pytestmark = pytest.mark.usefixtures("single_thread_torch")``."""
    with one_torch_thread():
        yield
