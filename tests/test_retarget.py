"""Retargeting (mazesearch.interp.mean_diff, label_free, retarget): group means against pandas,
pair vectors and windows by hand, and a planted mechanism: a model that carries its target at
the target token along known directions is retargeted by the mean-difference direction, while
random directions of the same norm are not."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import one_torch_thread
from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import edge_endpoints
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode
from mazesearch.interp import label_free, mean_diff, retarget
from mazesearch.interp.activations import build_index
from mazesearch.interp.counterfactuals import make_pairs
from mazesearch.interp.steering import residuals_at
from mazesearch.model.gpt import GPT, ModelConfig

VOCAB = Vocab.build(4)
N = 4


def test_group_means_and_open_minus_closed_against_pandas():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    g = rng.integers(0, 6, 200)
    g[g == 4] = 5  # group 4 left empty
    means, counts = mean_diff.group_means(X, g, 7)
    want = pd.DataFrame(X).groupby(g).mean()
    for k in range(7):
        if k in want.index:
            np.testing.assert_allclose(means[k], want.loc[k].to_numpy(), rtol=1e-12)
            assert counts[k] == int(np.sum(g == k))
        else:
            assert counts[k] == 0 and not means[k].any()
    is_open = rng.random((200, 3)) < 0.4
    is_open[:, 2] = True  # never closed: no difference defined
    diff, ok = mean_diff.open_minus_closed(X, is_open)
    for e in range(2):
        np.testing.assert_allclose(diff[e], X[is_open[:, e]].mean(0) - X[~is_open[:, e]].mean(0), rtol=1e-10)
    assert ok.tolist() == [True, True, False] and not diff[2].any()
    with pytest.raises(ValueError, match="group labels"):
        mean_diff.group_means(X, g, 5)


def test_pair_vectors_windows_and_controls_by_hand():
    cell_means = np.arange(12, dtype=float).reshape(4, 3)
    edge_diff = np.eye(3)
    kind = np.array(["target_move", "edge_add", "edge_remove", "wall_move", "target_move"])
    v, ok = mean_diff.pair_vectors(kind, added=np.array([-1, 1, -1, 2, -1]), removed=np.array([-1, -1, 0, 1, -1]),
                                   old_target=np.array([0, 0, 0, 0, 3]), new_target=np.array([2, 0, 0, 0, 1]),
                                   cell_means=cell_means, cell_ok=np.array([True, True, True, False]),
                                   edge_diff=edge_diff, edge_ok=np.ones(3, bool))
    want = [[6, 6, 6], [0, 1, 0], [-1, 0, 0], [0, -1, 1], [0, 0, 0]]  # new - old; open - closed; cell 3 has no mazes
    np.testing.assert_allclose(v, want)
    assert ok.tolist() == [True, True, True, True, False]
    P, dpos = np.array([40, 50]), np.array([44, 57])
    assert [w.tolist() for w in mean_diff.window("target", P, dpos)] == [[37, 47], [38, 48]]
    assert [w.tolist() for w in mean_diff.window("path_start", P, dpos)] == [[39, 49], [40, 50]]
    lo, hi = mean_diff.window("path", P, dpos)
    assert lo.tolist() == [39, 49] and hi is None
    assert [w.tolist() for w in mean_diff.window("decision", P, dpos)] == [[44, 57], [45, 58]]
    src = mean_diff.permuted_labels(50, seed=3)
    assert sorted(src.tolist()) == list(range(50)) and not np.any(src == np.arange(50))
    u = np.random.default_rng(1).standard_normal((2, 5, 3))
    like = np.random.default_rng(2).standard_normal((5, 3))
    np.testing.assert_allclose(np.linalg.norm(mean_diff.same_norm(u, like), axis=-1),
                               np.broadcast_to(np.linalg.norm(like, axis=-1), (2, 5)), rtol=1e-5)


def test_label_free_clusters_and_names_by_hand():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 6)) * 5
    truth = np.repeat(np.arange(4), 30)
    X = centres[truth] + rng.standard_normal((120, 6)) * 0.1
    c = label_free.find_clusters(X, 4, seed=0)
    assert label_free.label_checks(c, np.full(4, -1), truth)["purity"] == 1.0
    maze, cluster, push = label_free.naming_batch(c, per_cluster=5)
    assert len(maze) == 20 and np.all(c.assign[maze] != cluster)
    np.testing.assert_allclose(X[maze] + push, c.centroids[cluster] + (X[maze] - c.centroids[c.assign[maze]]), rtol=1e-5)
    names, agreement = label_free.names_from_endings(np.array([0, 0, 0, 1, 1, 2]), np.array([7, 7, 3, -1, -1, 2]), 4)
    assert names.tolist() == [7, -1, 2, -1] and np.allclose(agreement, [2 / 3, 0, 1, 0])


# ---------------------------------------------------------------------------- a planted mechanism


class PlantedGPT(GPT):
    """Blocks that write nothing (the residual passes through; hooks still fire) and cell tokens
    embedded as ``4 * U[cell]`` (U orthonormal): the target is carried at its own token along
    ``U[target]``. The readout believes the target is ``argmax U @ resid`` at the target token
    (after the last block) and walks networkx's shortest path to it in the prompt's maze."""

    def __init__(self, mazes: dict[bytes, tuple[nx.Graph, int]], seed: int = 0):
        cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=8, d_mlp=16, n_ctx=120, d_vocab=len(VOCAB.id_to_token),
                          positional="rotary")
        super().__init__(cfg, seed=seed)
        self.mazes = mazes
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((32, 32)))
        self.U = torch.tensor(q[: N * N], dtype=torch.float32)  # [cells, d]
        with torch.no_grad():
            self.embed.weight.zero_()
            for cell in range(N * N):
                self.embed.weight[VOCAB.unary_id[cell // N, cell % N]] = 4 * self.U[cell]
            for block in self.blocks:
                for w in (block.attn.o.weight, block.attn.o.bias, block.mlp.out.weight, block.mlp.out.bias):
                    w.zero_()
        self.start, self.end = VOCAB.token_to_id["<PATH_START>"], VOCAB.token_to_id["<PATH_END>"]
        self.cell_of = {int(VOCAB.unary_id[r, c]): r * N + c for r in range(N) for c in range(N)}

    def forward(self, tokens: torch.Tensor, positions=None) -> torch.Tensor:
        resid = self.hidden(tokens)  # [batch, pos, d]
        logits = torch.zeros(*tokens.shape, self.cfg.d_vocab)
        for b, row in enumerate(tokens.tolist()):
            p0 = row.index(self.start)
            last = len(row) - 1
            while row[last] == VOCAB.pad_id:
                last -= 1
            graph, origin = self.mazes[np.asarray(row[: p0 + 1], np.int32).tobytes()]
            believed = int((self.U @ resid[b, p0 - 2]).argmax())
            walked = [self.cell_of[t] for t in row[p0 + 1 : last + 1] if t in self.cell_of]
            here = walked[-1] if walked else None
            if here == believed:
                logits[b, last, self.end] = 1.0
                continue
            nxt = origin if here is None else nx.shortest_path(graph, here, believed)[1]
            logits[b, last, VOCAB.unary_id[nxt // N, nxt % N]] = 1.0
        return logits


def _graph(batch, i) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(N * N))
    g.add_edges_from(map(tuple, edge_endpoints(N)[batch.open[i].astype(bool)]))
    return g


@pytest.fixture(scope="module")
def planted():
    with one_torch_thread():
        mazes, _ = build_mazes(generator="wilson", grid_n=N, n_mazes=260, seed=11)
        tokens = encode(mazes, VOCAB, TokenizerOptions())
        pairs = make_pairs(mazes, tokens, VOCAB, kinds=("target_move",), n_per_kind=40, seed=0)
        lookup = {}
        for batch, tb in ((pairs.clean, pairs.clean_tokens), (pairs.corrupt, pairs.corrupt_tokens)):
            for i in range(len(batch)):
                lookup[tb.prompt(i).astype(np.int32).tobytes()] = (_graph(batch, i), int(batch.origin[i]))
        model = PlantedGPT(lookup).eval()
        fit = np.setdiff1d(np.arange(len(mazes)), pairs.maze_row)
        fit_mazes, fit_tokens = mazes.take(fit), tokens.take(fit)
        P = fit_tokens.prompt_len.astype(np.int64)
        index = build_index(fit_tokens, VOCAB, N, positions=("path_start", "path"))
        X = {}
        for site in ("target", "path"):
            rows, pos = mean_diff.fit_rows(index, P, site)
            X[site] = (residuals_at(model, fit_tokens, rows, pos, [1], VOCAB.pad_id, 64, point="pre")[1],
                       fit_mazes.target[rows].astype(np.int64))
        yield model, pairs, X


def _vectors(pairs, X, site):
    cm, counts = mean_diff.group_means(*X[site], N * N)
    return mean_diff.pair_vectors(pairs.kind, pairs.added_edge, pairs.removed_edge, pairs.clean.target,
                                  pairs.corrupt.target, cm, counts > 0, np.zeros((1, 32)), np.ones(1, bool))[0]


def test_planted_target_is_retargeted_by_the_mean_difference_and_not_by_random(planted):
    model, pairs, X = planted
    with one_torch_thread():
        r = retarget.Rollouts(model, VOCAB, pairs, max_new_tokens=N * N + N + 1, batch_size=64, cached=False)
        assert r.ceiling()["rate"] == 1.0  # the planted model solves every edited maze it is given
        vectors = {("target", 1): _vectors(pairs, X, "target"), ("path", 1): _vectors(pairs, X, "path")}
        permuted = {k: np.random.default_rng(7).standard_normal(v.shape).astype(np.float32) for k, v in vectors.items()}
        sw = retarget.sweep(r, vectors, permuted, [1.0], n_random=2, seed=0)
    assert (sw["site"], sw["layer"]) == ("target", 1)
    assert sw["at_strength_1"]["path@1"]["success"]["rate"] == 0.0  # the readout never looks there
    got = sw["curves"]["mean_diff"]["1.0"]
    assert got["success"]["rate"] >= 0.95 and got["unchanged"]["rate"] == 0.0
    assert sw["curves"]["random"]["1.0"]["success"]["rate"] <= 0.05
    assert sw["norm"] == pytest.approx(4 * np.sqrt(2), rel=1e-3)  # ||U[new] - U[old]|| x 4: the raw mean difference
