"""mazesearch.notebook: the run handle, the maze tokenizer on TransformerLens, token roles, the
attention / probe pictures, and where the report stops (failures and first errors against the
stage headline, a rerun and networkx; the model's own sequence; the logit lens against the
hook-free model; a stage's results against dvc.yaml), on a tiny run built here (the files
`dvc repro` would write)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
import yaml

from helpers import REL_TOL, one_torch_thread, rel_err
from mazesearch.data.dataset import build_mazes
from mazesearch.data.decode import decode_path
from mazesearch.data.maze import edge_endpoints, edge_index, n_edges, write_mazes, write_parquet_atomic
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, from_text, read_tokens, to_text, write_tokens
from mazesearch.io import InputError
from mazesearch.notebook import KINDS, ROLES, first_wrong_step, load_run, stage_results, token_roles

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocab.build(4)
MAZES = dict(generator="dfs", grid_n=4, sizes=[3, 4])  # placed 3x3 and 4x4 mazes in a 4x4 lattice
OPTION_SETS = [TokenizerOptions(coord=c, edges=e) for c in ("unary", "pair") for e in ("adjlist", "walls")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """data/, models/, reports/eval/{details,suites}/ of a 200-step run: suites test and
    test_sorted, their files written as stage evaluate writes them."""
    from mazesearch.evaluation.suite import evaluate_suite, headline, rounded
    from mazesearch.model.gpt import save_checkpoint
    from mazesearch.model.train import train
    from mazesearch.params import ModelSpec, TrainSpec

    root = tmp_path_factory.mktemp("run")
    VOCAB.to_json(root / "data" / "vocab.json")
    train_mazes, _ = build_mazes(n_mazes=400, seed=1, **MAZES)
    sets = {"train": train_mazes}
    for name, seed, count in (("val", 2, 32), ("test", 3, 12)):
        sets[name], _ = build_mazes(n_mazes=count, seed=seed, exclude_ids=train_mazes.maze_id, **MAZES)
    for name, batch in sets.items():
        write_mazes(batch, root / "data" / "mazes" / f"{name}.parquet")
        write_tokens(encode(batch, VOCAB), root / "data" / "tokens" / f"{name}.parquet")
    with one_torch_thread():
        result = train(ModelSpec(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64),
                       TrainSpec(device="cpu", batch_size=32, max_steps=200, lr=3e-3, warmup_steps=10,
                                 eval_every=1000, eval_batches=1, num_threads=1),
                       encode(sets["train"], VOCAB), encode(sets["val"], VOCAB), VOCAB, progress=False)
        save_checkpoint(result.model, root / "models")
        for suite, opts in (("test", TokenizerOptions()), ("test_sorted", TokenizerOptions(edge_order="sorted"))):
            out = evaluate_suite(result.model, sets["test"], VOCAB, opts, baseline_seed=0, batch_size=16)
            write_parquet_atomic(out.table, root / "data" / "predictions" / f"{suite}.parquet")
            details = rounded({"suite": suite, "dataset": "test", **out.report, "leakage": 0})
            for kind, doc in (("details", details), ("suites", headline(details))):
                (root / "reports" / "eval" / kind).mkdir(parents=True, exist_ok=True)
                (root / "reports" / "eval" / kind / f"{suite}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def run(run_dir):
    with one_torch_thread():
        yield load_run(run_dir)


# ---------------------------------------------------------------------------- the handle


def test_load_run_reads_every_file(run, run_dir):
    assert (run.dataset, run.suite, len(run), run.grid_n) == ("test", "test", 12, 4)
    stored = read_tokens(run_dir / "data" / "tokens" / "test.parquet")
    assert np.array_equal(run.tokens.flat, stored.flat) and np.array_equal(run.tokens.offsets, stored.offsets)
    pred = run.prediction(3)
    assert pred["true_path"] == run.mazes.path(3).tolist()
    assert pred["predicted_text"] == to_text(run.predictions["predicted_tokens"][3], VOCAB)


def test_a_suite_brings_its_own_tokenizer_options(run_dir):
    other = load_run(run_dir, suite="test_sorted")
    assert other.dataset == "test" and other.tokenizer_options.edge_order == "sorted"
    sorted_tokens = encode(other.mazes, VOCAB, TokenizerOptions(edge_order="sorted"))
    assert np.array_equal(other.tokens.flat, sorted_tokens.flat)  # what evaluation fed the model
    assert not np.array_equal(other.tokens.flat, read_tokens(run_dir / "data" / "tokens" / "test.parquet").flat)
    bare = load_run(run_dir, dataset="val")  # never evaluated: no predictions
    assert bare.suite is None and bare.prediction(0) is None
    with pytest.raises(ValueError, match="evaluated on dataset 'test', not 'val'"):
        load_run(run_dir, dataset="val", suite="test")
    with pytest.raises(FileNotFoundError, match="dvc repro evaluate@nope"):
        load_run(run_dir, suite="nope")


@pytest.mark.parametrize("missing, says", [
    ("models/model.safetensors", "dvc repro train"),
    ("data/mazes/test.parquet", "dvc repro generate@test"),
    ("data/vocab.json", "dvc repro vocab"),
])
def test_a_missing_file_is_named_with_the_stage_that_makes_it(run_dir, tmp_path, missing, says):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing}: missing; build it with `{says}`"):
        load_run(copy)


# ---------------------------------------------------------------------------- tokenizer


def test_transformer_lens_text_methods_match_our_decoding(run):
    model = run.model
    for i in range(len(run)):
        ids = run.tokens.tokens(i).astype(np.int64)
        text = to_text(ids, VOCAB)
        assert model.to_str_tokens(torch.from_numpy(ids)) == text.split()
        assert model.to_string(torch.from_numpy(ids)) == text
        assert model.to_tokens(text)[0].tolist() == ids.tolist()  # no BOS, no EOS added
    for opts in OPTION_SETS:  # every token form reads back exactly (pair + walls runs past n_ctx)
        ids = encode(run.mazes.take(np.arange(1)), VOCAB, opts).tokens(0).astype(np.int64)
        assert model.to_tokens(to_text(ids, VOCAB), truncate=False)[0].tolist() == ids.tolist()
    short, long = run.text(0, prompt=True), run.text(1)
    batch = model.to_tokens([short, long])  # right-padded with <PADDING>
    assert batch[0, len(short.split()):].eq(VOCAB.pad_id).all() and batch.shape[1] == len(long.split())
    with pytest.raises(ValueError, match=r"position 1: token '\(9,9\)' is not in the vocabulary"):
        model.to_tokens("<ADJLIST_START> (9,9)")


def test_generate_equals_our_greedy_rollout(run):
    from mazesearch.evaluation.rollout import greedy_rollout_cached

    prompts = [run.tokens.prompt(i) for i in range(4)]
    cap = run.grid_n**2 + run.grid_n + 1  # evaluation's, unary coordinates
    ours = greedy_rollout_cached(run.gpt, prompts, cap, VOCAB.id("<PATH_END>"), VOCAB.pad_id)
    for i in range(4):
        theirs = run.generate(i)
        assert theirs.tolist() == ours[i].tolist()
        assert theirs.tolist() == list(run.predictions["predicted_tokens"][i])  # stage evaluate's


# ---------------------------------------------------------------------------- roles

TEXT = ("<ADJLIST_START> (0,0) <--> (0,1) ; (1,0) <--> (1,1) ; (0,0) <--> (1,0) ; <ADJLIST_END> "
        "<ORIGIN_START> (0,1) <ORIGIN_END> <TARGET_START> (1,1) <TARGET_END> "
        "<PATH_START> (0,1) (0,0) (1,0) (1,1) <PATH_END>")
# docs/tokens.md's 2x2 maze, by hand: (role, cell, edge, lattice edge, path index) per token.
EXPECTED = [("adjlist_start", -1, -1, -1, -1),
            ("edge_from", 0, 0, 0, -1), ("connector", -1, 0, 0, -1),
            ("edge_to", 1, 0, 0, -1), ("edge_sep", -1, 0, 0, -1),
            ("edge_from", 2, 1, 1, -1), ("connector", -1, 1, 1, -1),
            ("edge_to", 3, 1, 1, -1), ("edge_sep", -1, 1, 1, -1),
            ("edge_from", 0, 2, 2, -1), ("connector", -1, 2, 2, -1),
            ("edge_to", 2, 2, 2, -1), ("edge_sep", -1, 2, 2, -1),
            ("adjlist_end", -1, -1, -1, -1), ("origin_start", -1, -1, -1, -1), ("origin", 1, -1, -1, -1),
            ("origin_end", -1, -1, -1, -1), ("target_start", -1, -1, -1, -1), ("target", 3, -1, -1, -1),
            ("target_end", -1, -1, -1, -1), ("path_start", -1, -1, -1, -1), ("path", 1, -1, -1, 0),
            ("path", 0, -1, -1, 1), ("path", 2, -1, -1, 2), ("path", 3, -1, -1, 3), ("path_end", -1, -1, -1, -1)]


def _table(roles):
    return list(roles[["role", "cell", "edge", "lattice_edge", "path_index"]].itertuples(index=False, name=None))


def test_roles_of_the_documented_example():
    roles = token_roles(from_text(TEXT, VOCAB), VOCAB, 2)
    assert _table(roles) == EXPECTED
    assert roles["token"].tolist() == TEXT.split() and roles["position"].tolist() == list(range(len(EXPECTED)))
    assert roles.loc[15, ["row", "col", "coord_part"]].tolist() == [0, 1, "cell"]
    # pair coordinates and the walls list: each coordinate is two tokens, both carry the cell
    walls = ("<WALLS_START> (0, ,1) <-X-> (1, ,1) ; <WALLS_END> <ORIGIN_START> (0, ,1) <ORIGIN_END> <TARGET_START> "
             "(1, ,1) <TARGET_END> <PATH_START> (0, ,1) (0, ,0) <PATH_END>")
    roles = token_roles(from_text(walls, VOCAB), VOCAB, 2)
    assert roles["role"].tolist()[:8] == ["walls_start", "edge_from", "edge_from", "connector", "edge_to", "edge_to",
                                          "edge_sep", "walls_end"]
    assert roles["coord_part"].tolist()[1:3] == ["row", "col"] and roles["cell"].tolist()[1:6] == [1, 1, -1, 3, 3]
    assert roles["lattice_edge"].tolist()[1:7] == [3] * 6  # (0,1)-(1,1): the second vertical edge
    assert roles["path_index"].tolist()[-5:] == [0, 0, 1, 1, -1]


def test_a_model_written_path_is_read_leniently_the_prompt_strictly():
    written = "(0,1) <ADJLIST_START> (3,3) <PATH_END> <PADDING> ;"  # a stray token, an off-grid cell
    ids = from_text(TEXT.replace("(0,1) (0,0) (1,0) (1,1) <PATH_END>", written), VOCAB)
    tail = token_roles(ids, VOCAB, 2).iloc[21:]
    assert tail["role"].tolist() == ["path", "path", "path", "path_end", "padding", "after_end"]
    assert tail["cell"].tolist() == [1, -1, -1, -1, -1, -1]  # (3,3) is off the 2x2 grid
    assert tail["path_index"].tolist() == [0, 1, 2, -1, -1, -1]
    with pytest.raises(ValueError, match=r"position 2: expected <-->, got ';'"):
        token_roles(from_text(TEXT.replace("(0,0) <--> (0,1)", "(0,0) ; (0,1)", 1), VOCAB), VOCAB, 2)
    with pytest.raises(ValueError, match="not lattice neighbours"):
        token_roles(from_text(TEXT.replace("(0,0) <--> (0,1)", "(0,0) <--> (1,1)", 1), VOCAB), VOCAB, 2)


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: f"{o.coord}-{o.edges}")
def test_roles_agree_with_the_maze_data(run, opts):
    mazes = run.mazes
    tokens = encode(mazes, VOCAB, opts)
    ends = edge_endpoints(mazes.grid_n)
    for i in range(len(mazes)):
        roles = token_roles(tokens.tokens(i), VOCAB, mazes.grid_n)
        assert set(roles["role"]) <= set(ROLES) and (roles["role"] != "").all()
        listed = mazes.open[i] == (0 if opts.edges == "walls" else 1)
        starts = roles[roles["role"] == "edge_from"].drop_duplicates("edge")  # one row per listed edge
        assert sorted(starts["lattice_edge"]) == np.flatnonzero(listed).tolist()  # each exactly once
        assert starts["edge"].tolist() == list(range(int(listed.sum())))
        for e, cells in roles[roles["role"].isin(["edge_from", "edge_to"])].groupby("lattice_edge")["cell"]:
            assert set(cells) == set(ends[e].tolist())  # the listed cells are that edge's ends
        assert set(roles.loc[roles["role"] == "origin", "cell"]) == {mazes.origin[i]}
        assert set(roles.loc[roles["role"] == "target", "cell"]) == {mazes.target[i]}
        path = roles[roles["role"] == "path"].drop_duplicates("path_index")
        assert path["cell"].tolist() == mazes.path(i).tolist()
        cut = int(tokens.prompt_len[i])  # the prompt's roles are the prefix of the sequence's
        assert token_roles(tokens.tokens(i)[:cut], VOCAB, mazes.grid_n).equals(roles.iloc[:cut])


# ---------------------------------------------------------------------------- pictures


def test_cell_attention_holds_exactly_the_attention_on_cell_tokens(run):
    i, layer = 2, 1
    query = run.position(i, "path")
    _, cache = run.run_with_cache(i, names_filter=f"blocks.{layer}.attn.hook_pattern")
    ids = run.tokens.tokens(i)
    coordinate = (VOCAB.coord_row[ids] >= 0) | (VOCAB.pair_row[ids] >= 0) | (VOCAB.pair_col[ids] >= 0)
    r, c = divmod(int(run.mazes.target[i]), run.grid_n)
    for head in range(run.model.cfg.n_heads):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, head, query].double().numpy()  # [key]
        mass = run.cell_attention(i, layer, head, query, cache)
        assert mass.shape == (run.grid_n**2,) and (mass >= 0).all()
        assert mass.sum() == pytest.approx(pattern[coordinate].sum(), rel=1e-12)
        assert mass[r * run.grid_n + c] == pytest.approx(pattern[ids == VOCAB.id(f"({r},{c})")].sum(), rel=1e-12)
        assert pattern[query + 1:].sum() == 0  # causal: the drawn mass never comes from the future
        drawn = run.draw_attention(i, layer, head, query, cache).axes[0].images[0].get_array()
        assert np.array_equal(np.asarray(drawn).ravel(), mass)  # the heatmap shows these numbers


def test_probe_maps_take_cells_or_edges(run, tmp_path):
    from mazesearch.notebook.draw import save_figure

    n = run.grid_n
    cells = np.linspace(0, 1, n * n)
    fig = run.draw_probe_map(0, cells, title="cells")
    assert np.array_equal(np.asarray(fig.axes[0].images[0].get_array()).ravel(), cells)
    edges = np.linspace(-1, 1, n_edges(n))
    edges[3] = np.nan
    fig = run.draw_probe_map(0, edges)
    shown = [c.get_array() for c in fig.axes[0].collections if c.get_array() is not None]
    assert len(shown) == 1 and np.array_equal(shown[0], np.delete(edges, 3))
    with pytest.raises(ValueError, match=f"per cell \\({n * n}\\) or per lattice edge \\({n_edges(n)}\\)"):
        run.draw_probe_map(0, np.zeros(5))
    save_figure(fig, tmp_path / "a.png")
    save_figure(run.draw_probe_map(0, edges), tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # deterministic PNG


def _arrows(fig):
    from matplotlib.colors import to_hex

    return [to_hex(a.get_edgecolor()) for a in fig.axes[0].patches if a.get_gid() == "predicted-step"]


def test_the_model_path_is_drawn_over_attention_and_probe_maps(run):
    """The evaluated model's path goes over both pictures as the gallery draws it: one arrow per
    pair of consecutive cells, blue along open edges, red through a wall; the same one overlay."""
    from mazesearch.viz.figure import BAD_COLOUR, PRED_COLOUR

    i = 0
    pred = run.prediction(i)["predicted_path"]
    cells = [c for c in pred if c >= 0]
    query = run.position(i, "path")
    assert len(_arrows(run.draw_attention(i, 0, 0, query))) == len(cells) - 1 > 0
    assert len(_arrows(run.draw_probe_map(i, np.zeros(run.grid_n**2)))) == len(cells) - 1
    assert len(_arrows(run.draw_probe_map(i, np.zeros(n_edges(run.grid_n))))) == len(cells) - 1
    assert _arrows(run.draw_attention(i, 0, 0, query, predicted=False)) == []
    # a path of our own: one open move, then one through a closed edge (read off the maze's bits)
    n, open_row = run.grid_n, run.mazes.open[i]
    ends = edge_endpoints(n)
    a, b = (int(x) for x in ends[np.flatnonzero(open_row)[0]])
    c, d = (int(x) for x in ends[np.flatnonzero(open_row == 0)[0]])
    colours = _arrows(run.draw_attention(i, 0, 0, query, predicted=[a, b, -1, c, d]))
    assert colours == [PRED_COLOUR, BAD_COLOUR]  # a-b open, b..c a non-cell gap (no arrow), c-d walled
    texts = [t for t in run.draw_probe_map(i, np.zeros(n * n), predicted=[a, b, -1, c, d]).axes[0].texts
             if t.get_gid() == "predicted-noncell"]
    assert [t.get_text() for t in texts] == ["?"]


# ---------------------------------------------------------------------------- where the report stops

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


@pytest.fixture(scope="module")
def skewed_run(run_dir, tmp_path_factory):
    """The tiny run with ln_final's weight drawn in [0.2, 3] and a bias: a lens or DLA that forgot
    the weight (the bridge does not fold it into W_U) is far off here."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("skewed")
    shutil.copytree(run_dir, root, dirs_exist_ok=True)
    weights = load_file(root / "models" / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    weights["ln_final.weight"] = 0.2 + 2.8 * torch.rand(weights["ln_final.weight"].shape, generator=g)
    weights["ln_final.bias"] = torch.randn(weights["ln_final.bias"].shape, generator=g)
    save_file(weights, root / "models" / "model.safetensors")
    with one_torch_thread():
        yield load_run(root)


def test_lens_is_the_hook_free_model_decoding_every_layer(skewed_run):
    from mazesearch.interp.lens import lens_logits

    run, i = skewed_run, 1
    ids = run.ids(i)
    T, positions = ids.shape[1], torch.arange(ids.shape[1])
    got = run.lens(i)
    with torch.no_grad():  # the oracle: no TransformerLens, the training module's own ln_final and unembed
        streams = list(run.gpt.residual_stream(ids))  # embeddings, then after each block
        want = torch.stack([run.gpt.logits(r)[0] for r in streams])
        ln = run.gpt.ln_final
        forgot_w = torch.stack([run.gpt.unembed(torch.nn.functional.layer_norm(r, ln.normalized_shape, None, ln.bias,
                                                                               ln.eps))[0] for r in streams])
        stage = lens_logits(run.model, ids, torch.zeros(T, dtype=torch.long), positions)  # stage logit_lens'
        logits = run.model(ids)[0]
    assert got.shape == (run.gpt.cfg.n_layers + 1, T, len(VOCAB))
    assert rel_err(got, want) < REL_TOL and rel_err(got, stage) < REL_TOL
    assert rel_err(got[-1], logits) < REL_TOL  # the last layer is the model's own output
    assert rel_err(forgot_w, want) > 0.1  # the weight matters here: the check above tells them apart
    assert run.lens(i, own=True).shape[1] == run.ids(i, own=True).shape[1]


def test_a_hand_made_dla_multiplies_by_ln_final_w(skewed_run):
    """docs/notebook.md's trap, as written there: decompose_resid(apply_ln=True) is centred and
    divided by ln_final's scale only; times ln_final.w, @ W_U, the components plus the bias term
    sum to the logits. Without the weight they do not."""
    model = skewed_run.model
    logits, cache = skewed_run.run_with_cache(2)
    with torch.no_grad():
        stack = cache.decompose_resid(apply_ln=True)  # [components, batch, pos, d_model]
        dla = (stack * model.ln_final.w) @ model.W_U  # [components, batch, pos, d_vocab]
        bias = model.ln_final.b @ model.W_U + model.b_U
        assert rel_err(dla.sum(0) + bias, logits) < REL_TOL
        assert rel_err((stack @ model.W_U).sum(0) + bias, logits) > 0.1


def test_results_read_a_stages_files(run, run_dir, tmp_path):
    eval_dir = run_dir / "reports" / "eval"
    got = run.results("evaluate")  # the run's suite
    assert got.metrics == json.loads((eval_dir / "suites" / "test.json").read_text())
    assert got.details == json.loads((eval_dir / "details" / "test.json").read_text())
    assert got.files == ("reports/eval/suites/test.json", "reports/eval/details/test.json")
    assert run.results("evaluate@test_sorted").details["tokenizer"]["edge_order"] == "sorted"
    with pytest.raises(FileNotFoundError, match="reports/logit_lens/metrics.json: missing; build it with "
                                                "`dvc repro logit_lens`"):
        run.results("logit_lens")
    with pytest.raises(FileNotFoundError, match="reports/data/test.json: missing; build it with "
                                                "`dvc repro generate@test`"):
        run.results("generate")  # the run's dataset
    with pytest.raises(ValueError, match="stage 'activations' writes no metrics or details"):
        run.results("activations")
    with pytest.raises(ValueError, match=r"name it evaluate@<suite>"):
        stage_results(run_dir, "evaluate")
    probes = tmp_path / "reports" / "probes"  # one headline file per probe, then the details
    (probes / "metrics").mkdir(parents=True)
    for name, score in (("walls", 0.9), ("target", 0.5)):
        (probes / "metrics" / f"{name}.json").write_text(json.dumps({"test_score": score}))
    with pytest.raises(FileNotFoundError, match="reports/probes/details.json: missing; build it with "
                                                "`dvc repro probes`"):
        stage_results(tmp_path, "probes")
    (probes / "details.json").write_text('{"n": 3}')
    res = stage_results(tmp_path, "probes")
    assert res.metrics == {"target": {"test_score": 0.5}, "walls": {"test_score": 0.9}} and res.details == {"n": 3}
    (probes / "details.json").write_text('{"n": ')
    with pytest.raises(InputError, match=r"probes/details.json: stage details is not valid JSON"):
        stage_results(tmp_path, "probes")


def test_results_know_every_json_output_of_dvc_yaml():
    """results.FILES against dvc.yaml: every stage with a metric, or a details JSON, is listed with
    exactly the paths the stage declares."""
    from mazesearch.notebook.results import FILES

    def paths(entries) -> list[str]:
        return [(next(iter(e)) if isinstance(e, dict) else e).replace("${key}", "{key}") for e in entries or []]

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        spec = spec.get("do", spec)
        metrics, outs = paths(spec.get("metrics")), paths(spec.get("outs"))
        json_details = [p for p in outs if p.endswith(".json") and ("details" in p or p.endswith("summary.json"))]
        if not metrics and not json_details:
            assert stage not in FILES, stage
            continue
        want_metrics, want_details = FILES[stage]
        assert sorted(metrics) == sorted(p for p in metrics if want_metrics and fnmatch.fnmatch(p, want_metrics)), stage
        assert bool(metrics) == bool(want_metrics), stage
        assert json_details == ([want_details] if want_details else []), stage
    assert set(FILES) <= set(stages)


# ---------------------------------------------------------------------------- the quickstart


def test_quickstart_runs_on_a_run(run_dir, tmp_path):
    out = tmp_path / "pictures" / "quick.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(run_dir), str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"Run({str(run_dir)!r}: 12 mazes of dataset 'test'")
    assert lines[1] == run_text(run_dir) and lines[-1] == f"wrote {out}"
    missing = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "dvc repro" in missing.stderr


def run_text(run_dir: Path) -> str:
    return to_text(read_tokens(run_dir / "data" / "tokens" / "test.parquet").tokens(0), VOCAB)
