"""Builders shared by several test files: ``from helpers import ...`` (pytest puts tests/ on
sys.path, since tests/ is not a package)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import Vocab

# torch (mazesearch.model.gpt) is imported inside the model helpers: the maze-only test files that
# use this module need not pay for it.

VOCAB = Vocab.build(8)  # the tiny models' vocabulary: grids up to 8x8


def tiny(**overrides):
    """A 2-layer GPT ``ModelConfig`` over :data:`VOCAB`, small enough to train a few steps per test."""
    from mazesearch.model.gpt import ModelConfig

    base = dict(d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64, n_ctx=200, d_vocab=len(VOCAB))
    return ModelConfig(**{**base, **overrides})


def subprocess_env(pythonpath: Path | None = None) -> dict:
    """The environment for a `dvc` or stage subprocess: this interpreter's folder first on PATH
    (stages run `python -m stages.<name>`), DVC's analytics off, and PYTHONPATH when given (a
    temporary repo's own code)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one intra-op thread, then restore the count: tiny models on a shared 2-core
    box only gain contention from more. (numba's kernels run on its workqueue pool, not OpenMP,
    so building mazes inside the block does not change torch's count: mazesearch/data/jit.py.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batch_from_paths(n: int, open_: np.ndarray, paths: list[list[int]], generator: str = "test") -> MazeBatch:
    """A MazeBatch with the given walls (``uint8 [B, E]``) and one stored path per maze (origin
    first, target last); n_shortest_paths 1, forks_on_path and n_dead_ends 0."""
    B = len(paths)
    offsets = np.zeros(B + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in paths])
    return MazeBatch(
        grid_n=n, generator=generator, open=np.asarray(open_, dtype=np.uint8),
        origin=np.array([p[0] for p in paths], np.int32),
        target=np.array([p[-1] for p in paths], np.int32),
        path_flat=np.concatenate(paths).astype(np.int32), path_offsets=offsets,
        n_shortest_paths=np.ones(B, np.int64), forks_on_path=np.zeros(B, np.int16),
        n_dead_ends=np.zeros(B, np.int16),
    )


# Float comparisons are relative to the magnitude compared. Two float32 computations of the same
# function that differ only in summation order (another CPU's kernels, fused vs unfused attention)
# differ by about n * eps relative per reduction of length n (eps = 1.2e-7): for d_model <= 64 and
# a few layers that is ~1e-5 of the largest value. REL_TOL leaves 5x headroom over that bound.
REL_TOL = 5e-5


def rel_err(got, want) -> float:
    """max |got - want| / max |want| (numpy arrays or torch tensors; 0/0 counts as 0)."""
    got, want = (np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64) for x in (got, want))
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = float(np.abs(got - want).max()) if want.size else 0.0
    return diff / scale if scale > 0 else diff


def dfs3_token_sets(vocab: Vocab):
    """(train, val) TokenBatches: 200 and 40 3x3 DFS mazes, val excluding train (the training
    tests' data)."""
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.tokens import encode

    train_mazes, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=200, seed=1)
    val_mazes, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=40, seed=2, exclude_ids=train_mazes.maze_id)
    return encode(train_mazes, vocab), encode(val_mazes, vocab)


def texts_outside_figure(fig) -> list[str]:
    """The visible, non-empty texts of a drawn figure whose window extent leaves the figure."""
    from matplotlib.text import Text

    renderer, box = fig.canvas.get_renderer(), fig.bbox
    out = []
    for text in fig.findobj(Text):
        if not (text.get_visible() and text.get_text()):
            continue
        ext = text.get_window_extent(renderer)
        if ext.x0 < box.x0 - 0.5 or ext.x1 > box.x1 + 0.5 or ext.y0 < box.y0 - 0.5 or ext.y1 > box.y1 + 0.5:
            out.append(text.get_text())
    return out
