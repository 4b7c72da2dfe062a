"""Progress bars are drawn on a terminal only: `dvc exp run` and CI logs get no bars (issue 28)."""

from __future__ import annotations

import io

import numpy as np

from mazesearch.data import dataset
from mazesearch.model.train import _progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _generate(monkeypatch, stream) -> str:
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(dataset, "_PROGRESS_MIN", 10)
    batch, _ = dataset.build_mazes(generator="wilson", grid_n=3, n_mazes=40, seed=0, progress=True)
    assert len(batch) == 40 and np.all(batch.origin >= 0)
    return stream.getvalue()


def test_maze_generation_bar_only_on_a_terminal(monkeypatch):
    assert "maze" in _generate(monkeypatch, _Terminal())  # the bar is drawn where someone watches
    assert _generate(monkeypatch, io.StringIO()) == ""  # a log file: nothing


def test_training_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert _progress_bar(10, 0, True).disable
    monkeypatch.setattr("sys.stderr", _Terminal())
    bar = _progress_bar(10, 0, True)
    assert not bar.disable
    bar.close()
    assert _progress_bar(10, 0, False) is None
