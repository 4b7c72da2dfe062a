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


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib Figure saved while the test runs, in order (the PNGs are still written),
    so a test can inspect what was drawn: artists, titles, their extents."""
    from matplotlib.figure import Figure

    figures, savefig = [], Figure.savefig

    def record(fig, *args, **kwargs):
        figures.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures

