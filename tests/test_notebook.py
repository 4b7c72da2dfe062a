"""mazesearch.notebook: the run handle, the maze tokenizer on TransformerLens, token roles, and
the attention / probe pictures, on a tiny run built here (the files `dvc repro` would write)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import one_torch_thread
from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import edge_endpoints, n_edges, write_mazes, write_parquet_atomic
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, from_text, read_tokens, to_text, write_tokens
from mazesearch.notebook import ROLES, load_run, token_roles

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocab.build(4)
MAZES = dict(generator="dfs", grid_n=4, sizes=[3, 4])  # placed 3x3 and 4x4 mazes in a 4x4 lattice
OPTION_SETS = [TokenizerOptions(coord=c, edges=e) for c in ("unary", "pair") for e in ("adjlist", "walls")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """data/, models/, reports/eval/details/ of a 200-step run: suites test and test_sorted."""
    from mazesearch.evaluation.suite import evaluate_suite
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
            details = root / "reports" / "eval" / "details" / f"{suite}.json"
            details.parent.mkdir(parents=True, exist_ok=True)
            details.write_text(json.dumps({"suite": suite, "dataset": "test", **out.report}, default=str))
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
