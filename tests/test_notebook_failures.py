"""mazesearch.notebook: where the report stops: failures and first errors against the stage
headline, a rerun and networkx, and the model's own sequence, on the tiny run of
tests/notebook_fixtures.py (the files `dvc repro` would write)."""

from __future__ import annotations

import json
import shutil

import networkx as nx
import numpy as np
import pytest
import torch

from notebook_fixtures import VOCAB, run, run_dir  # noqa: F401 (fixtures)
from mazesearch.data.dataset import build_mazes
from mazesearch.data.decode import decode_path
from mazesearch.data.maze import edge_endpoints, edge_index, n_edges
from mazesearch.data.tokens import from_text, to_text
from mazesearch.io import InputError
from mazesearch.notebook import KINDS, first_wrong_step, load_run


# A 3x3 tree, origin 0, target 8, path 0 1 4 7 8; dead ends 1->2->5 and 4->3->6:
#
#     0 - 1 - 2
#         |   |
#     3 - 4   5
#     |   |
#     6   7 - 8
TREE_EDGES = [(0, 1), (1, 2), (2, 5), (1, 4), (4, 3), (3, 6), (4, 7), (7, 8)]
TREE_DIST = [4, 3, 4, 3, 2, 5, 4, 1, 0]  # moves to the target, counted by hand


@pytest.mark.parametrize("cells, ended, want", [
    ([0, 1, 4, 7, 8], True, None),
    ([0, 1, 2, 5], True, (2, "wrong_turn", 1, 2, (4,))),  # into the dead end
    ([0, 1, 4, 1, 4], True, (3, "wrong_turn", 4, 1, (7,))),  # back
    ([0, 3, 4, 7, 8], True, (1, "wall", 0, 3, (1,))),  # 0 - 3 is walled
    ([0, 1, 4, 8], True, (3, "jump", 4, 8, (7,))),
    ([0, 1, 1, 4], True, (2, "jump", 1, 1, (4,))),  # staying put
    ([0, 1, -1, 4], True, (2, "not_a_cell", 1, -1, (4,))),
    ([0, 1, 4], True, (3, "early_end", 4, -1, (7,))),
    ([0, 1, 4], False, (3, "early_end", 4, -1, (7,))),  # cut off
    ([0, 1, 4, 7, 8, 7], True, (5, "overshoot", 8, 7, ())),
    ([0, 1, 4, 7, 8], False, (5, "overshoot", 8, -1, ())),  # no <PATH_END> after the target
    ([1, 4, 7, 8], True, (0, "start", -1, 1, (0,))),
    ([], True, (0, "start", -1, -1, (0,))),
])
def test_first_wrong_step_of_a_hand_maze(cells, ended, want):
    open_ = np.zeros(n_edges(3), np.uint8)
    open_[[edge_index(3, a, b) for a, b in TREE_EDGES]] = 1
    err = first_wrong_step(3, open_, 0, 8, cells, ended, np.array(TREE_DIST))
    assert (None if err is None else (err.step, err.kind, err.at, err.chose, err.correct)) == want
    assert err is None or err.kind in KINDS


def test_first_wrong_step_agrees_with_networkx_on_cyclic_mazes():
    """Percolation mazes (several shortest paths): the first error is the first entry after which
    the written prefix is no prefix of any shortest path (networkx), ``correct`` the cells that
    would extend it, and no error exactly when the path is a shortest path followed by <PATH_END>."""
    n = 4
    mazes, _ = build_mazes(generator="percolation", grid_n=n, n_mazes=40, seed=5, p=0.6)
    assert (mazes.n_shortest_paths > 1).sum() >= 5  # cycles, so "correct" is a set
    rng, ends, seen = np.random.default_rng(0), edge_endpoints(n), set()
    for i in range(len(mazes)):
        graph = nx.Graph(ends[mazes.open[i] == 1].tolist())
        origin, target = int(mazes.origin[i]), int(mazes.target[i])
        shortest = [tuple(p) for p in nx.all_shortest_paths(graph, origin, target)]
        to_target = nx.single_source_shortest_path_length(graph, target)
        dist = np.array([to_target.get(c, -1) for c in range(n * n)])
        for _ in range(6):
            cells = list(shortest[rng.integers(len(shortest))])[: rng.integers(0, len(shortest[0]) + 2)]
            for _ in range(rng.integers(0, 3)):  # then a lattice neighbour (open or walled), any cell, or no cell
                last = cells[-1] if cells and cells[-1] >= 0 else origin
                r, c = divmod(last, n)
                options = [a * n + b for a, b in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                           if 0 <= a < n and 0 <= b < n]
                cells.append([int(rng.choice(options)), int(rng.integers(n * n)), -1][rng.choice(3, p=[0.7, 0.2, 0.1])])
            ended = bool(rng.random() < 0.8)
            err = first_wrong_step(n, mazes.open[i], origin, target, cells, ended, dist)
            k = next((k for k in range(len(cells)) if tuple(cells[: k + 1]) not in {p[: k + 1] for p in shortest}),
                     len(cells))
            if tuple(cells) in shortest and ended:
                assert err is None
                continue
            assert err.step == k and err.at == (cells[k - 1] if k else -1)
            assert set(err.correct) == {p[k] for p in shortest if p[:k] == tuple(cells[:k]) and len(p) > k}
            at, chose = (cells[k - 1] if k else None), (cells[k] if k < len(cells) else None)
            lattice = (k > 0 and chose is not None and chose >= 0
                       and abs(chose // n - at // n) + abs(chose % n - at % n) == 1)
            assert err.kind == ("start" if k == 0 else "overshoot" if at == target else "early_end" if chose is None
                                else "not_a_cell" if chose < 0 else "wrong_turn" if graph.has_edge(at, chose)
                                else "wall" if lattice else "jump")
            seen.add(err.kind)
    assert seen == set(KINDS)  # every kind was met


def _exact_by_rerun(run, i: int) -> bool:
    """Re-run the model (generate, not the predictions file): on a tree the exact path is the stored one."""
    cells, _, ended = decode_path(run.generate(i), VOCAB, run.grid_n)
    return ended and cells == run.mazes.path(i).tolist()


def test_failures_match_the_stage_headline_and_a_rerun(run, run_dir):
    fails = run.failures()
    headline = json.loads((run_dir / "reports" / "eval" / "suites" / "test.json").read_text())
    assert 0 < len(fails) < len(run)  # the tiny model gets some mazes right, some wrong
    assert len(fails) == round((1 - headline["model_exact"]) * len(run))
    assert set(fails.index) == {i for i in range(len(run)) if not _exact_by_rerun(run, i)}
    assert fails["maze_id"].tolist() == [int(run.mazes.maze_id[i]) for i in fails.index]
    other = run.failures("test_sorted")  # another suite on the same mazes: its own headline
    sorted_headline = json.loads((run_dir / "reports" / "eval" / "suites" / "test_sorted.json").read_text())
    assert len(other) == round((1 - sorted_headline["model_exact"]) * len(run))
    with pytest.raises(FileNotFoundError, match="dvc repro evaluate@nope"):
        run.failures("nope")


def test_failures_refuse_a_headline_from_another_run(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    path = copy / "reports" / "eval" / "suites" / "test.json"
    headline = json.loads(path.read_text())
    headline["model_exact"] = round(headline["model_exact"] + 1 / 12, 6)  # one more maze right
    path.write_text(json.dumps(headline))
    with pytest.raises(InputError, match=r"suites/test.json: says model_exact .* but data/predictions/test.parquet "
                                         r"has \d+ of 12 exact \(re-run `dvc repro evaluate@test`\)"):
        load_run(copy).failures()


def test_first_error_is_where_the_models_own_sequence_leaves_the_true_one(run):
    fails = run.failures()
    for i in range(len(run)):
        err = run.first_error(i)
        assert (err is None) == (i not in fails.index)
        if err is None:
            continue
        assert (err.step, err.kind, err.at, err.chose, err.correct) == tuple(
            fails.loc[i, ["step", "kind", "at", "chose", "correct"]])
        own, true, p = run.ids(i, own=True)[0], run.ids(i)[0], err.position
        assert torch.equal(own[: p + 1], true[: p + 1])  # a tree: up to the choice it walked the true path
        assert err.written.split()[0] == VOCAB.id_to_token[int(own[p + 1])] if err.written else p + 1 == len(own)
        logits, _ = run.run_with_cache(i, own=True, names_filter=[])
        assert int(logits[0, p].argmax()) == int(own[p + 1])  # greedy: position p's logits chose it
        truth = VOCAB.id_to_token[int(true[p + 1])]  # what the teacher-forced sequence has there
        if err.correct:  # a tree: one correct cell
            r, c = divmod(err.correct[0], run.grid_n)
            assert len(err.correct) == 1 and truth == f"({r},{c})"
        else:
            assert truth == "<PATH_END>"
        assert err.describe(run.grid_n).startswith(f"step {err.step} at ")


def test_entry_positions_follow_decode_path_in_pair_form():
    from mazesearch.notebook.run import _entry_starts

    ids = from_text("(0, ,1) ; (1, ,1) (1, <PATH_END>", VOCAB)  # a cell, no cell, a cell, half a cell
    assert decode_path(ids, VOCAB, 2, "pair")[0] == [1, -1, 3, -1]
    assert _entry_starts(ids, VOCAB, 2, "pair") == [0, 2, 3, 5, 6]
    assert _entry_starts(from_text("(0,1) (3,3) (1,1)", VOCAB), VOCAB, 2, "unary") == [0, 1, 2, 3]


def test_the_models_own_sequence_is_what_it_predicts(run, run_dir):
    from mazesearch.evaluation.rollout import greedy_rollout_cached

    for i in range(4):
        own, P = run.ids(i, own=True), int(run.tokens.prompt_len[i])
        assert own[0, :P].tolist() == run.tokens.prompt(i).tolist()
        assert own[0, P:].tolist() == list(run.predictions["predicted_tokens"][i])  # stage evaluate's
        assert run.text(i, own=True) == run.model.to_string(own[0]) == to_text(own[0].numpy(), VOCAB)
        logits, cache = run.model.run_with_cache(own)  # straight on the bridge
        assert logits[0, P - 1 : -1].argmax(-1).tolist() == own[0, P:].tolist()  # it wrote its own argmax
        assert run.roles(i, own=True)["token"].tolist() == run.text(i, own=True).split()
    bare = load_run(run_dir, dataset="val")  # no predictions: generate's continuation
    ours = greedy_rollout_cached(bare.gpt, [bare.tokens.prompt(0)], 4 * 4 + 4 + 1, VOCAB.id("<PATH_END>"), VOCAB.pad_id)
    assert bare.ids(0, own=True)[0, int(bare.tokens.prompt_len[0]):].tolist() == ours[0].tolist()
    with pytest.raises(ValueError, match="not both"):
        run.ids(0, prompt=True, own=True)
