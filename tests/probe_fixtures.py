"""Probe test builders shared by test_probes.py and test_probe_stage.py: random tree mazes with
their true paths (networkx), the activation index layout, and planted activation stores."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd

from helpers import batch_from_paths
from mazesearch.data.maze import MazeBatch, edge_index, n_edges, neighbour_table
from mazesearch.data.solve import path_stats
from mazesearch.interp.labels import build_labels



def tree_mazes(n: int, B: int, seed: int) -> MazeBatch:
    """B random-DFS spanning-tree mazes with random distinct endpoints (seeded); the path
    through the tree comes from networkx."""
    rng = np.random.default_rng(seed)
    nbr, _ = neighbour_table(n)
    open_ = np.zeros((B, n_edges(n)), dtype=np.uint8)
    paths = []
    for i in range(B):
        seen, stack, tree = {0}, [0], nx.Graph()
        while stack:
            options = [c for c in nbr[stack[-1]] if c >= 0 and c not in seen]
            if not options:
                stack.pop()
                continue
            nxt = int(options[rng.integers(len(options))])
            open_[i, edge_index(n, stack[-1], nxt)] = 1
            tree.add_edge(stack[-1], nxt)
            seen.add(nxt)
            stack.append(nxt)
        o, t = rng.choice(n * n, 2, replace=False)
        paths.append(nx.shortest_path(tree, int(o), int(t)))
    batch = batch_from_paths(n, open_, paths)
    # the true stats, so the file passes read_mazes' validation
    batch.forks_on_path, batch.n_dead_ends = path_stats(n, batch.open, batch.path_flat, batch.path_offsets)
    return batch


def store_index(batch: MazeBatch) -> pd.DataFrame:
    """The activation index layout of mazesearch.interp.activations: path_start, path tokens, per maze."""
    rows = []
    for m in range(len(batch)):
        rows.append((m, "path_start", 0, -1, 20))
        rows += [(m, "path", k + 1, int(c), 21 + k) for k, c in enumerate(batch.path(m))]
    df = pd.DataFrame(rows, columns=["maze_row", "kind", "path_step", "current_cell", "token_pos"])
    df.insert(0, "row", np.arange(len(df), dtype=np.int64))
    df["maze_id"] = batch.maze_id[df["maze_row"].to_numpy()]
    return df


class FakeStore:
    """Duck-types mazesearch.interp.activations.ActivationStore (index, layers, load, meta)."""

    def __init__(self, index: pd.DataFrame, arrays: dict[str, np.ndarray]):
        self.index, self.layers, self.meta = index, list(arrays), {}
        self._arrays = {k: v.astype(np.float16) for k, v in arrays.items()}

    def load(self, layer: str) -> np.ndarray:
        return self._arrays[layer]


def planted_stores(batch: MazeBatch, seed: int = 0):
    """Trained: layer 0 noise, layer 1 = future_path bits + walls + target one-hot + noise.
    Random-init: noise at both layers."""
    rng = np.random.default_rng(seed)
    index = store_index(batch)
    L = build_labels(batch, index, ["future_path", "walls"])
    n_cells = batch.grid_n**2
    signal = np.concatenate([
        2.0 * L["future_path"].values, 2.0 * batch.open[index["maze_row"]],
        2.0 * np.eye(n_cells)[batch.target[index["maze_row"]]],
    ], axis=1) - 1.0
    noise = lambda d: rng.normal(size=(len(index), d))  # noqa: E731
    d = signal.shape[1] + 8
    planted = np.c_[signal + 0.3 * noise(signal.shape[1]), noise(8)]
    trained = FakeStore(index, {"embed": noise(d), "blocks.0.hook_resid_post": planted})
    random_init = FakeStore(index, {"embed": noise(d), "blocks.0.hook_resid_post": noise(d)})
    return trained, random_init
