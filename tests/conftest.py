"""Fixtures shared by several test files (plain builders live in tests/helpers.py)."""

import pytest

from helpers import one_torch_thread

# `make test` runs files on two xdist workers (--dist loadfile). The end-to-end file is the longest
# by far (two full tiny repros and a partial one); xdist's default hands out files by test count, which could
# start it last, after the other worker had already run out of files. Collected first, with
# --no-loadscope-reorder, it starts at once and the other worker takes every other file meanwhile.
LONGEST_FIRST = ("test_pipeline.py",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: the rest keep their order


@pytest.fixture(scope="module")
def single_thread_torch(maze_tokens):
    """torch on one thread for the requesting module, set after that module's ``maze_tokens``
    fixture has built its mazes (see helpers.one_torch_thread). Use with
    ``pytestmark = pytest.mark.usefixtures("single_thread_torch")``."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def notebook_run_dir(tmp_path_factory):
    """The tiny trained run of tests/notebook_fixtures.py, built once per worker for every
    tests/test_notebook_*.py file (they take it as ``run_dir``)."""
    from notebook_fixtures import build_run

    return build_run(tmp_path_factory.mktemp("notebook_run"))


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

