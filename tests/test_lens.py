"""Logit lens and direct logit attribution (mazesearch.interp.forks, lens, dla; stages logit_lens
and dla): moves and dead-end branches on hand-made mazes and against networkx, masses on planted
logits, the lens against the hook-free model, DLA summing to the logit difference and agreeing
with TransformerLens' own decomposition, and both stages on a tiny run trained here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
import yaml

from helpers import REL_TOL, batch_from_paths, one_torch_thread, rel_err, texts_outside_figure, tiny
from mazesearch.data.maze import edge_endpoints, edge_index, n_edges, write_mazes
from mazesearch.data.tokens import Vocab, encode, write_tokens
from mazesearch.interp import dla, lens
from mazesearch.interp.forks import cell_tokens, move_positions
from mazesearch.io import stage_main
from probe_fixtures import tree_mazes
from test_bad_input import check_one_error_line

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocab.build(4)  # tiny.yaml's max_grid_n


def hand_maze():
    """3x3 tree, origin 0, target 8, path 0 1 4 7 8; dead ends 1->2->5 and 4->3->6:

        0 - 1 - 2
            |   |
        3 - 4   5
        |   |
        6   7 - 8
    """
    open_ = np.zeros((1, n_edges(3)), np.uint8)
    for a, b in [(0, 1), (1, 2), (2, 5), (1, 4), (4, 3), (3, 6), (4, 7), (7, 8)]:
        open_[0, edge_index(3, a, b)] = 1
    batch = batch_from_paths(3, open_, [[0, 1, 4, 7, 8]])
    return batch, encode(batch, VOCAB)


def cells(mask) -> set[int]:
    return set(np.flatnonzero(mask).tolist())


def test_moves_of_a_hand_maze():
    batch, tokens = hand_maze()
    mv = move_positions(batch, tokens, VOCAB)
    assert mv.step.tolist() == [0, 1, 2, 3]  # the target (k = 4) predicts <PATH_END>: no move
    assert mv.token_pos.tolist() == [int(tokens.prompt_len[0]) + k for k in range(4)]
    assert mv.is_fork.tolist() == [False, True, True, False]
    assert mv.previous.tolist() == [-1, 0, 1, 4] and mv.next_cell.tolist() == [1, 4, 7, 8]
    assert [cells(r) for r in mv.legal] == [{1}, {2, 4}, {3, 7}, {8}]
    assert [cells(r) for r in mv.correct] == [{1}, {4}, {7}, {8}]
    assert [cells(r) for r in mv.dead_end] == [set(), {2, 5}, {3, 6}, set()]
    assert mv.n_legal.tolist() == [1, 2, 2, 1] and mv.degree.tolist() == [1, 3, 3, 2]


def test_a_cycle_gives_two_correct_cells_and_no_dead_end():
    open_ = np.ones((1, n_edges(2)), np.uint8)  # 2x2, every edge open: one cycle
    batch = batch_from_paths(2, open_, [[0, 1, 3]])
    mv = move_positions(batch, encode(batch, VOCAB), VOCAB)
    assert mv.is_fork.tolist() == [True, False]
    assert cells(mv.correct[0]) == {1, 2} and not mv.wrong[0].any() and not mv.dead_end.any()


def test_forks_and_dead_ends_match_networkx_on_random_trees():
    batch = tree_mazes(5, 30, seed=3)
    v5 = Vocab.build(5)
    mv = move_positions(batch, encode(batch, v5), v5)
    assert mv.is_fork.sum() > 20
    ends = edge_endpoints(5)
    for p in range(len(mv)):
        m, k = int(mv.maze_row[p]), int(mv.step[p])
        path = batch.path(m).tolist()
        graph = nx.Graph(ends[batch.open[m] == 1].tolist())
        c, walked, target = path[k], set(path[:k]), path[-1]
        rest = graph.copy()
        rest.remove_node(c)
        dead = set()
        for nb in graph.neighbors(c):
            part = nx.node_connected_component(rest, nb)
            if target not in part and not part & walked:
                dead |= part
        assert cells(mv.dead_end[p]) == dead, (m, k)
        onward = set(graph.neighbors(c)) - walked
        assert cells(mv.legal[p]) == onward and cells(mv.correct[p]) == {path[k + 1]}
        assert mv.is_fork[p] == (len(onward) >= 2)  # decision points = baseline options >= 2 on a tree


def test_masses_on_planted_logits():
    batch, tokens = hand_maze()
    mv = move_positions(batch, tokens, VOCAB)
    tok = cell_tokens(VOCAB, 3)
    logits = np.zeros((2, len(mv), len(VOCAB)))  # layer 0: uniform over all 38 tokens
    planted = np.full(len(VOCAB), -np.inf)  # layer 1 at the fork at cell 1: weights 4:2:1:1:1:1
    for token, weight in [(tok[4], 4), (tok[2], 2), (tok[5], 1), (tok[0], 1), (tok[3], 1),
                          (VOCAB.token_to_id["<PATH_END>"], 1)]:
        planted[token] = np.log(weight)
    logits[1, 1] = planted
    m = lens.fork_masses(lens.softmax(logits), mv, tok)
    # next cell 4 | dead ends 2 (entry), 5 | back 0 | other cell 3 | not a cell: <PATH_END>
    want = {"correct": 0.4, "dead_end": 0.3, "dead_end_entry": 0.2, "back": 0.1, "other_cells": 0.1,
            "not_a_cell": 0.1}
    assert {k: round(float(v[1, 1]), 12) for k, v in m.items()} == want
    V = len(VOCAB)  # uniform: one cell each for correct/back, two dead-end cells at both forks
    assert np.allclose(m["dead_end"][0], [0, 2 / V, 2 / V, 0]) and np.allclose(m["back"][0], [0, 1 / V, 1 / V, 1 / V])
    assert np.allclose(m["other_cells"][0], [8 / V, 5 / V, 5 / V, 7 / V]) and np.allclose(m["not_a_cell"][0], 29 / V)
    assert np.allclose(sum(m[k] for k in lens.MASSES), 1.0)
    assert lens.hits(logits, mv, tok).tolist() == [[False] * 4, [False, True, False, False]]  # argmax 0: a special
    s = lens.summarize(logits, mv, tok)  # forks are rows 1, 2; corridors rows 0, 3
    assert s["accuracy"] == {"forks": [0.0, 0.5], "corridors": [0.0, 0.0]}
    assert s["fork_mass"]["dead_end"][1] == pytest.approx((0.3 + 2 / V) / 2)
    assert s["fork_mass"]["dead_end_share"] == pytest.approx([2 / 3, (3 / 7 + 2 / 3) / 2])  # dead / (dead + next)
    assert s["decision_layer"]["forks"] == {"mean": 0.5, "counts": [1, 1]}  # row 1 decided at layer 1


def test_decision_layers():
    argmax = np.array([[5, 1, 5, 1], [5, 5, 1, 2], [5, 5, 5, 3], [5, 5, 5, 5]])  # [layers, P]
    assert lens.decision_layers(argmax).tolist() == [0, 1, 2, 3]  # P2 agreed at 0, flipped, came back


def test_attribute_by_hand():
    W_U = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])  # [d_model=2, d_vocab=3]
    b_U = torch.tensor([0.5, 0.0, 0.0])
    parts = {"a": torch.tensor([[2.0, 1.0]]), "b": torch.tensor([[0.0, 3.0]])}  # sum (2, 4): LN scale 1
    c, w = torch.tensor([0]), torch.tensor([1])
    names, v = dla.attribute(parts, None, None, None, W_U, b_U, c, w)
    assert names == ["a", "b", "unembed.bias"] and v[:, 0].tolist() == [1.0, -3.0, 0.5]
    ln_w, ln_b = torch.tensor([1.0, 2.0]), torch.tensor([0.1, 0.2])
    names, v = dla.attribute(parts, torch.tensor([[1.0]]), ln_w, ln_b, W_U, b_U, c, w)
    # LN(a + b) = (-1, 1) * w + b = (-0.9, 2.2): logit 0 = -0.9 + 0.5, logit 1 = 2.2, difference -2.6
    assert names[-1] == "ln_final.bias" and np.allclose(v[:, 0].tolist(), [1.5, -4.5, 0.4])
    assert v.sum().item() == pytest.approx(-2.6)


# ---------------------------------------------------------------------------- a tiny run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """data/{mazes,tokens}/probe.parquet (40 Wilson 4x4 at the origin), data/vocab.json, models/
    (150 steps on 400 mazes), params.yaml (tiny.yaml + logit_lens and dla sections)."""
    from mazesearch.data.dataset import build_mazes
    from mazesearch.model.gpt import save_checkpoint
    from mazesearch.model.train import train
    from mazesearch.params import ModelSpec, TrainSpec

    root = tmp_path_factory.mktemp("lens_run")
    VOCAB.to_json(root / "data" / "vocab.json")
    train_mazes, _ = build_mazes(generator="wilson", grid_n=4, n_mazes=400, seed=1)
    probe, _ = build_mazes(generator="wilson", grid_n=4, n_mazes=40, seed=4, exclude_ids=train_mazes.maze_id)
    write_mazes(probe, root / "data" / "mazes" / "probe.parquet")
    write_tokens(encode(probe, VOCAB), root / "data" / "tokens" / "probe.parquet")
    with one_torch_thread():
        result = train(ModelSpec(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64),
                       TrainSpec(device="cpu", batch_size=32, max_steps=150, lr=3e-3, warmup_steps=10,
                                 eval_every=1000, eval_batches=1, num_threads=1),
                       encode(train_mazes, VOCAB), encode(probe.take(np.arange(8)), VOCAB), VOCAB, progress=False)
    save_checkpoint(result.model, root / "models")
    params = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    section = dict(dataset="probe", n_mazes=40, batch_size=16, device="cpu", num_threads=1, control_seed=7)
    params.update(logit_lens=dict(section), dla=dict(section))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def run(run_dir):
    """(mazes, tokens, moves, trained GPT) of the tiny run."""
    from mazesearch.data.maze import read_mazes
    from mazesearch.data.tokens import read_tokens
    from mazesearch.model.gpt import load_gpt

    with one_torch_thread():
        mazes = read_mazes(run_dir / "data" / "mazes" / "probe.parquet")
        tokens = read_tokens(run_dir / "data" / "tokens" / "probe.parquet")
        yield mazes, tokens, move_positions(mazes, tokens, VOCAB), load_gpt(run_dir / "models").eval()


def variants(trained):
    """The trained rotary model, and untrained learned-position / LayerNorm-free ones with sharp attention."""
    from mazesearch.model.gpt import GPT

    out = [trained]
    for cfg in (tiny(d_vocab=len(VOCAB), positional="learned"), tiny(d_vocab=len(VOCAB), normalization="none")):
        model = GPT(cfg, seed=3).eval()
        with torch.no_grad():
            for block in model.blocks:
                block.attn.q.weight.mul_(3.0)
                block.attn.v.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
        out.append(model)
    return out


def test_lens_equals_the_hook_free_model_at_every_layer(run):
    from mazesearch.interp.bridge import to_bridge

    mazes, tokens, mv, trained = run
    ids = torch.from_numpy(tokens.padded(VOCAB.pad_id, dtype=np.int64))
    bi, pi = torch.from_numpy(mv.maze_row), torch.from_numpy(mv.token_pos)
    for model in variants(trained):
        got = lens.run_lens(to_bridge(model), tokens, mv, batch_size=16, pad_id=VOCAB.pad_id)  # 3 batches
        with torch.no_grad():
            want = [model.logits(resid)[bi, pi] for resid in model.residual_stream(ids)]  # GPT's own modules
            real = model(ids)[bi, pi]
        assert got.shape == (model.cfg.n_layers + 1, len(mv), len(VOCAB))
        assert rel_err(got[-1], real) < REL_TOL  # the last layer decodes to the model's logits
        for layer in range(model.cfg.n_layers + 1):
            assert rel_err(got[layer], want[layer]) < REL_TOL, layer


def test_dla_sums_to_the_models_logit_difference(run):
    from mazesearch.interp.bridge import to_bridge

    mazes, tokens, mv, trained = run
    ids = torch.from_numpy(tokens.padded(VOCAB.pad_id, dtype=np.int64))
    tok = cell_tokens(VOCAB, mazes.grid_n)
    for model in variants(trained):
        att = dla.fork_attribution(to_bridge(model), tokens, mv, tok, batch_size=16, pad_id=VOCAB.pad_id)
        assert len(att.total) == mv.is_fork.sum() > 30
        with torch.no_grad():  # the hook-free model's own logit difference
            real = model(ids)[torch.from_numpy(mv.maze_row[att.rows]), torch.from_numpy(mv.token_pos[att.rows])]
        pick = lambda t: real.gather(1, torch.from_numpy(t)[:, None])[:, 0]  # noqa: E731
        assert rel_err(att.total, pick(att.correct_token) - pick(att.wrong_token)) < REL_TOL
        assert dla.sum_error(att.values, att.total) < 1e-5  # well inside the stage's 1e-4
        cell_of = lens.token_cells(tok, len(VOCAB))  # the wrong cell is the best-ranked legal wrong one
        assert all(mv.wrong[r, cell_of[w]] for r, w in zip(att.rows, att.wrong_token))
        wrong_logits = np.where(mv.wrong[att.rows], real[:, tok].numpy(), -np.inf)  # [forks, n_cells]
        assert rel_err(pick(att.wrong_token), wrong_logits.max(axis=1)) < REL_TOL  # (a near-tie may go either way)
        assert att.names == dla.component_names(to_bridge(model).cfg)
        missing = 0
        for i, name in enumerate(att.names):  # leave out any component that matters: the check fails
            if np.abs(att.values[i]).max() > 1e-3 * np.abs(att.total).max():
                assert dla.sum_error(np.delete(att.values, i, axis=0), att.total) > dla.SUM_TOLERANCE, name
                missing += 1
        assert missing >= len(att.names) - 3


def test_dla_agrees_with_transformer_lens_compatibility_mode(run):
    """TL folds the LayerNorms, centres weights and moves value biases into b_O: its layer totals
    (decompose_resid) must equal ours, and its heads (stack_head_results) ours minus each head's
    constant value-bias output."""
    from mazesearch.interp.bridge import to_bridge

    mazes, tokens, mv, trained = run
    ours = to_bridge(trained)
    att = dla.fork_attribution(ours, tokens, mv, cell_tokens(VOCAB, 4), batch_size=64, pad_id=VOCAB.pad_id)
    at = {name: att.values[i] for i, name in enumerate(att.names)}
    tl = to_bridge(trained)
    tl.enable_compatibility_mode()
    ids = torch.from_numpy(tokens.padded(VOCAB.pad_id, dtype=np.int64))
    bi, pi = torch.from_numpy(mv.maze_row[att.rows]), torch.from_numpy(mv.token_pos[att.rows])
    good, bad = torch.zeros(ids.shape, dtype=torch.long), torch.zeros(ids.shape, dtype=torch.long)
    good[bi, pi], bad[bi, pi] = torch.from_numpy(att.correct_token), torch.from_numpy(att.wrong_token)
    with torch.no_grad():
        _, cache = tl.run_with_cache(ids)
        stack, labels = cache.decompose_resid(return_labels=True)
        layers = cache.logit_attrs(stack, tokens=good, incorrect_tokens=bad)[:, bi, pi].numpy()
        heads = cache.stack_head_results(layer=-1)  # [n_layers * n_heads, batch, pos, d_model]
        heads = cache.logit_attrs(heads, tokens=good, incorrect_tokens=bad)[:, bi, pi].numpy()
        _, own = ours.run_with_cache(ids, names_filter=["ln_final.hook_scale"])
    assert labels == ["embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    for j, label in enumerate(labels):
        l = label.split("_")[0]
        want = at["embed"] if label == "embed" else at[f"L{l}.mlp"] if "mlp" in label else \
            sum(at[f"L{l}H{h}"] for h in range(2)) + at[f"L{l}.attn_bias"]
        assert rel_err(layers[j], want) < REL_TOL, label
    for l in range(2):
        ln1_b = ours.blocks[l].ln1.b
        for h in range(2):
            with torch.no_grad():
                b_v = ln1_b @ ours.W_V[l, h] + ours.b_V[l, h]  # what TL folds away: [d_head]
                const = (b_v @ ours.W_O[l, h]).expand(len(bi), -1)  # [forks, d_model]
                _, shift = dla.attribute({"v": const}, own["ln_final.hook_scale"][bi, pi], ours.ln_final.w,
                                         ours.ln_final.b, ours.W_U, ours.b_U, torch.from_numpy(att.correct_token),
                                         torch.from_numpy(att.wrong_token))
            assert rel_err(heads[2 * l + h] + shift[0].numpy(), at[f"L{l}H{h}"]) < REL_TOL, (l, h)


# ---------------------------------------------------------------------------- the stages


def stage_argv(run_dir: Path, out: Path) -> list[str]:
    d = run_dir / "data"
    return ["--params", str(run_dir / "params.yaml"), "--model-dir", str(run_dir / "models"), "--tokens-dir",
            str(d / "tokens"), "--mazes-dir", str(d / "mazes"), "--vocab", str(d / "vocab.json"), "--out-dir", str(out)]


def drawn_texts_outside(fig) -> list[str]:
    """helpers.texts_outside_figure without the labels of ticks beyond the axis limits, which
    matplotlib keeps as objects but never draws."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            hidden |= {t.label1.get_text() for t in axis.get_major_ticks() if not low <= t.get_loc() <= high}
    return [t for t in texts_outside_figure(fig) if t not in hidden]


def test_stages_write_deterministic_reports(run_dir, run, tmp_path, saved_figures):
    import stages.dla
    import stages.logit_lens
    from mazesearch.evaluation.predict import predict_forks
    from mazesearch.model.gpt import load_gpt

    outputs = {stages.logit_lens: ["metrics.json", "details.json", "lens.csv", "lens.png"],
               stages.dla: ["metrics.json", "details.json", "components.csv", "top_components.png"]}
    with one_torch_thread():
        for stage, files in outputs.items():
            for copy in ("a", "b"):
                stage.main(stage_argv(run_dir, tmp_path / stage.__name__ / copy))
            first, second = (tmp_path / stage.__name__ / c for c in "ab")
            assert sorted(p.name for p in first.iterdir()) == sorted(files)
            for name in files:
                assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert [drawn_texts_outside(fig) for fig in saved_figures] == [[]] * 4

    import json

    lm = json.loads((tmp_path / "stages.logit_lens" / "a" / "metrics.json").read_text())
    assert list(lm) == ["acc_forks", "control_acc_forks", "chance_forks", "acc_corridors", "decision_layer_forks",
                        "decision_layer_corridors", "dead_end_mass_final",
                        "dead_end_share_final", "control_dead_end_share_final"]
    mazes, tokens, mv, _ = run  # the final-layer fork accuracy is the evaluation's teacher-forced fork rate
    model = load_gpt(run_dir / "models").eval()
    with torch.no_grad(), one_torch_thread():
        picked = predict_forks(model, tokens, mazes, VOCAB, "unary", batch_size=64)
    assert lm["acc_forks"] == pytest.approx(np.mean(picked == mv.next_cell[mv.is_fork]), rel=1e-5)
    assert lm["chance_forks"] == pytest.approx(np.mean(1 / mv.n_legal[mv.is_fork]), rel=1e-5)
    csv = (tmp_path / "stages.logit_lens" / "a" / "lens.csv").read_text().splitlines()
    assert csv[0] == "layer_idx,layer,forks,corridors,control_forks,control_corridors,chance_forks"
    assert [r.split(",")[1] for r in csv[1:]] == ["embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]

    dm = json.loads((tmp_path / "stages.dla" / "a" / "metrics.json").read_text())
    details = json.loads((tmp_path / "stages.dla" / "a" / "details.json").read_text())
    assert dm["top1_component"] == details["ranked"][0] and details["n_forks"] == mv.is_fork.sum()
    assert dm["top1_frac_of_total"] == pytest.approx(dm["top1_mean"] / dm["total_logit_diff"], rel=1e-4)
    rows = (tmp_path / "stages.dla" / "a" / "components.csv").read_text().splitlines()
    assert rows[0] == "component,mean,std,control_mean" and [r.split(",")[0] for r in rows[1:]] == details["components"]
    means = sum(float(r.split(",")[1]) for r in rows[1:])
    assert means == pytest.approx(dm["total_logit_diff"], rel=1e-4)  # the mean parts sum to the mean total


def corrupt_tokens(run: Path, tmp: Path) -> tuple[Path, str]:
    path = tmp / "data" / "tokens" / "probe.parquet"
    path.write_bytes(path.read_bytes()[:200])
    return path, "not readable Parquet"


def other_mazes(run: Path, tmp: Path) -> tuple[Path, str]:
    from mazesearch.data.dataset import build_mazes

    path = tmp / "data" / "mazes" / "probe.parquet"
    write_mazes(build_mazes(generator="wilson", grid_n=4, n_mazes=40, seed=99)[0], path)
    return path, "disagree with the tokens"


def params_edit(key: str, value, says: str, named: str = "params.yaml"):
    def edit(run: Path, tmp: Path) -> tuple[Path, str]:
        path = tmp / "params.yaml"
        raw = yaml.safe_load(path.read_text())
        section, name = key.split(".")
        raw[section][name] = value
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return tmp / named, says
    return edit


@pytest.mark.parametrize("stage_name, corrupt", [
    ("logit_lens", corrupt_tokens),
    ("logit_lens", params_edit("logit_lens.n_mazes", 0, "logit_lens.n_mazes")),
    ("dla", other_mazes),
    ("dla", params_edit("dla.n_mazes", 41, "dla.n_mazes=41 exceeds the 40 mazes", "data/tokens/probe.parquet")),
    ("dla", params_edit("dla.dataset", "nope", "dla.dataset='nope' is not in datasets")),
])
def test_bad_input_is_one_error_line_and_nothing_written(run_dir, tmp_path, capsys, stage_name, corrupt):
    import importlib
    import shutil

    stage = importlib.import_module(f"stages.{stage_name}")
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    bad, says = corrupt(run_dir, work)
    out = work / "out"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_, one_torch_thread():
        stage_main(lambda: stage.main(stage_argv(work, out)))
    captured = capsys.readouterr()
    check_one_error_line(subprocess.CompletedProcess([], exit_.value.code, captured.out, captured.err), bad, says)
    assert not out.exists() and not out.with_name("out.tmp").exists()
