"""mazesearch.interp.heads and stage heads: hypothesis keys against a hand-listed oracle, chance
by hand, a planted model whose heads attend exactly to lattice neighbours / the target (ranked
first, layer-0 uniform heads exactly at chance), the same check failing on keys off by one, and
the stage on a tiny trained run (deterministic files; bad input = one error line)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import VOCAB, one_torch_thread
from interp_fixtures import build_tiny_run, stage_args, tree_bytes
from mazesearch.data.dataset import build_mazes
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, from_text
from mazesearch.interp import heads
from mazesearch.interp.heads import HYPOTHESES, chance_mass, hypothesis_keys, key_mass, score_heads, sequence_roles
from mazesearch.interp.roles import token_roles
from mazesearch.model.gpt import GPT, ModelConfig

ROOT_TEXT = ("<ADJLIST_START> (1,0) <--> (0,0) ; (0,0) <--> (0,1) ; (1,0) <--> (1,1) ; <ADJLIST_END> "
             "<ORIGIN_START> (0,1) <ORIGIN_END> <TARGET_START> (1,1) <TARGET_END> "
             "<PATH_START> (0,1) (0,0) (1,0) (1,1) <PATH_END>")  # docs/tokens.md's 2x2 maze
# positions: 1 (1,0)  3 (0,0)  4 ;  5 (0,0)  7 (0,1)  8 ;  9 (1,0)  11 (1,1)  12 ;  15 origin (0,1)
#            18 target (1,1)  21 (0,1)  22 (0,0)  23 (1,0)  24 (1,1)
HAND_KEYS = {  # query -> keys, worked out on paper from the definitions in docs/interp.md
    "lattice_adjacency": {3: {1}, 5: {1}, 7: {3, 5}, 9: {3, 5}, 11: {1, 7, 9}, 15: {3, 5, 11},
                          18: {1, 7, 9, 15}, 21: {3, 5, 11, 18}, 22: {1, 7, 9, 15, 21},
                          23: {3, 5, 11, 18, 22}, 24: {1, 7, 9, 15, 21, 23}},
    "adjlist_occurrences": {21: {7}, 22: {3, 5}, 23: {1, 9}, 24: {11}},
    "adjlist_partners": {21: {5}, 22: {1, 7}, 23: {3, 11}, 24: {9}},
    "target": {21: {18}, 22: {18}, 23: {18}, 24: {18}},
    "origin": {21: {15}, 22: {15}, 23: {15}, 24: {15}},
    "sep_back_1": {4: {3}, 8: {7}, 12: {11}},
    "sep_back_3": {4: {1}, 8: {5}, 12: {9}},
}


def as_sets(keys: np.ndarray) -> dict[int, set[int]]:  # bool [T, T] -> {query: keys}
    return {int(q): set(np.flatnonzero(keys[q]).tolist()) for q in np.flatnonzero(keys.any(1))}


def test_keys_match_the_hand_listed_oracle():
    roles = token_roles(from_text(ROOT_TEXT, VOCAB), VOCAB, 2)
    keys = hypothesis_keys(roles, 2)
    assert list(HYPOTHESES) == list(HAND_KEYS)
    for h, name in enumerate(HYPOTHESES):
        assert as_sets(keys[h]) == HAND_KEYS[name], name
    padded = hypothesis_keys(roles, 2, length=40)  # padding positions are never queries or keys
    assert np.array_equal(padded[:, :26, :26], keys) and not padded[:, 26:].any() and not padded[:, :, 26:].any()


def test_chance_by_hand():
    roles = token_roles(from_text(ROOT_TEXT, VOCAB), VOCAB, 2)
    chance, count = chance_mass(hypothesis_keys(roles, 2))
    by_name = dict(zip(HYPOTHESES, zip(chance, count)))
    # a uniform causal head at query q spreads 1/(q+1) over each visible position
    assert by_name["target"][1] == 4
    assert by_name["target"][0] == pytest.approx(1 / 22 + 1 / 23 + 1 / 24 + 1 / 25, rel=1e-12)
    assert by_name["adjlist_occurrences"][0] == pytest.approx(1 / 22 + 2 / 23 + 2 / 24 + 1 / 25, rel=1e-12)
    assert by_name["sep_back_3"][0] == pytest.approx(1 / 5 + 1 / 9 + 1 / 13, rel=1e-12)
    lattice = sum(len(k) / (q + 1) for q, k in HAND_KEYS["lattice_adjacency"].items())
    assert by_name["lattice_adjacency"] == (pytest.approx(lattice, rel=1e-12), 11)


def test_walls_format_has_no_adjacency_queries():
    mazes, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=2, seed=0)
    tokens = encode(mazes, VOCAB, TokenizerOptions(edges="walls"))
    keys = hypothesis_keys(token_roles(tokens.tokens(0), VOCAB, 3), 3)
    counts = dict(zip(HYPOTHESES, chance_mass(keys)[1]))
    assert counts["adjlist_occurrences"] == counts["adjlist_partners"] == 0
    assert counts["target"] == len(mazes.path(0))


def test_key_mass_of_a_pattern_that_follows_each_hypothesis_is_one():
    """Synthetic patterns planted into the pure scorer: head h of 'layer' h spreads its query's
    attention evenly over hypothesis h's keys (uniform causal where h names none)."""
    mazes, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=3, seed=0)
    tokens = encode(mazes, VOCAB)
    T = int(tokens.lengths.max())
    keys = np.stack([hypothesis_keys(r, 3, T) for r in sequence_roles(tokens, VOCAB, 3)], axis=1)  # [hyp, b, T, T]
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    rows = np.where(keys.any(-1, keepdims=True), keys / np.maximum(keys.sum(-1, keepdims=True), 1), uniform)
    pattern = torch.from_numpy(rows.transpose(1, 0, 2, 3)[:, :, None])  # [b, layer = hyp, head 1, T, T]
    mass = key_mass(pattern, torch.from_numpy(keys)).numpy()  # [hyp, b, layer, 1]
    _, count = chance_mass(keys)
    for h in range(len(HYPOTHESES)):
        assert mass[h, :, h, 0] == pytest.approx(count[h], rel=1e-12)  # mass 1 at every scored query


def test_scores_are_ratios_of_sums_and_the_interval_brackets_them():
    mass = np.zeros((2, 3, 1, 2))  # [hyp, maze, layer, head]
    mass[0, :, 0, 0] = [1.0, 2.0, 6.0]  # summed mass of 1, 4 and 6 queries
    count = np.array([[1, 4, 6], [0, 0, 0]])
    scores = heads.HeadScores(mass=mass, chance=np.array([[0.5, 1.0, 1.5], [0, 0, 0]]), count=count)
    assert scores.score()[0, 0, 0] == pytest.approx(9 / 11) and np.isnan(scores.score()[1]).all()
    assert scores.chance_rate()[0] == pytest.approx(3 / 11)
    low, high = scores.bootstrap(seed=0)
    assert low[0, 0, 0] < 9 / 11 < high[0, 0, 0] and np.isnan(low[1]).all()
    same = heads.HeadScores(mass=np.ones((1, 5, 1, 1)), chance=np.ones((1, 5)), count=np.full((1, 5), 2))
    assert same.bootstrap(seed=0)[:, 0, 0, 0] == pytest.approx([0.5, 0.5])  # identical mazes: no spread


# ---------------------------------------------------------------------------- planted model

SMALL = Vocab.build(3)  # 29 tokens: embeddings can be one-hot in d_model 32


def planted(target_pos: int, n_ctx: int) -> GPT:
    """Layer 0: all zero (uniform attention). L1H0: every query attends to position target_pos
    (flagged by a position embedding). L1H1: a coordinate token attends to the tokens of its
    lattice neighbours (QK = the adjacency of the cells' one-hot token embeddings)."""
    V, d = len(SMALL), 32
    cfg = ModelConfig(d_model=d, n_layers=2, n_heads=2, d_head=d, d_mlp=4, n_ctx=n_ctx, d_vocab=V,
                      normalization="none", positional="learned")
    gpt = GPT(cfg, seed=0)
    s = 40.0 * math.sqrt(d)  # scores are divided by sqrt(d_head): a gap of 40 nats
    with torch.no_grad():
        for p in gpt.parameters():
            p.zero_()
        gpt.embed.weight[:, :V] = torch.eye(V)
        gpt.pos_embed.weight[target_pos, V] = 1.0
        attn = gpt.blocks[1].attn
        attn.q.bias[0] = s  # head 0 rows 0..31: q = s e_0, k_0 = the position flag
        attn.k.weight[0, V] = 1.0
        attn.q.weight[d : 2 * d] = s * torch.eye(d)  # head 1: q = s x, k = A x, A = lattice adjacency
        for r in range(3):
            for c in range(3):
                for r2, c2 in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= r2 < 3 and 0 <= c2 < 3:
                        attn.k.weight[d + int(SMALL.unary_id[r, c]), int(SMALL.unary_id[r2, c2])] = 1.0
    return gpt.eval()


@pytest.fixture(scope="module")
def tree_tokens():
    mazes, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=40, seed=3)  # spanning trees: fixed prompt
    tokens = encode(mazes, SMALL)
    assert len(set(tokens.prompt_len.tolist())) == 1
    return tokens


def planted_scores(tokens, batch_size=16):
    from mazesearch.interp.bridge import to_bridge

    target_pos = int(tokens.prompt_len[0]) - 3  # <TARGET_START> (r,c) <TARGET_END> <PATH_START>
    roles = sequence_roles(tokens, SMALL, 3)
    assert all(r["role"].iloc[target_pos] == "target" for r in roles)
    with one_torch_thread():
        bridge = to_bridge(planted(target_pos, 64))
        return score_heads(bridge, tokens, roles, SMALL, 3, batch_size)


def test_planted_heads_are_found_and_uniform_heads_sit_at_chance(tree_tokens):
    scores = planted_scores(tree_tokens)
    score, chance = scores.score(), scores.chance_rate()
    h = {name: i for i, name in enumerate(HYPOTHESES)}
    assert np.unravel_index(np.nanargmax(score[h["lattice_adjacency"]]), score.shape[1:]) == (1, 1)
    assert np.unravel_index(np.nanargmax(score[h["target"]]), score.shape[1:]) == (1, 0)
    assert score[h["lattice_adjacency"], 1, 1] > 0.999 and score[h["target"], 1, 0] > 0.999
    # layer 0 has zero weights: uniform causal attention, i.e. exactly the chance rate
    np.testing.assert_allclose(score[:, 0], np.repeat(chance[:, None], 2, axis=1), rtol=1e-5)
    assert np.all(chance < 0.2)
    # right padding is harmless: one maze per forward gives the same sums
    alone = planted_scores(tree_tokens, batch_size=1)
    np.testing.assert_allclose(alone.mass, scores.mass, rtol=1e-5, atol=1e-6 * scores.mass.max())


def test_the_planted_check_fails_on_keys_off_by_one(tree_tokens, monkeypatch):
    """The scorer with every key shifted one position later: the planted heads are no longer
    found (the checks above would fail)."""
    honest = heads.hypothesis_keys

    def shifted(roles, grid_n, length=None):
        keys = honest(roles, grid_n, length)
        return np.roll(keys, 1, axis=-1) & np.tril(np.ones(keys.shape[-2:], dtype=bool))

    monkeypatch.setattr(heads, "hypothesis_keys", shifted)
    score = planted_scores(tree_tokens).score()
    h = {name: i for i, name in enumerate(HYPOTHESES)}
    assert score[h["lattice_adjacency"], 1, 1] < 0.5 and score[h["target"], 1, 0] < 0.01


def test_a_random_model_sits_near_chance(tree_tokens):
    from mazesearch.interp.bridge import to_bridge

    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=64, d_vocab=len(SMALL),
                      positional="rotary")
    with one_torch_thread():
        scores = score_heads(to_bridge(GPT(cfg, seed=7)), tree_tokens, sequence_roles(tree_tokens, SMALL, 3),
                             SMALL, 3, 16)
    ratio = scores.score() / scores.chance_rate()[:, None, None]
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


# ---------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("run"))


def test_stage_writes_deterministic_reports(run_dir, tmp_path):
    from stages.heads import main

    with one_torch_thread():
        main(stage_args(run_dir, tmp_path / "a"))
        main(stage_args(run_dir, tmp_path / "b"))
    a = tree_bytes(tmp_path / "a")
    assert a == tree_bytes(tmp_path / "b")
    assert set(a) == {"metrics.json", "scores.csv", "top_heads.md", *(f"{h}.png" for h in HYPOTHESES),
                      "bottleneck.csv", "bottleneck.json", "bottleneck.png"}
    table = pd.read_csv(tmp_path / "a" / "scores.csv")
    assert len(table) == len(HYPOTHESES) * 2 * 2 and table["score"].notna().all()
    assert np.allclose(table["ratio"], table["score"] / table["chance"], rtol=1e-4)
    import json

    metrics = json.loads(a["metrics.json"])
    assert metrics["n_mazes"] == 24 and set(metrics) == {"n_mazes", *HYPOTHESES, "bottleneck"}
    assert set(metrics["bottleneck"]) == {"ratio", "control_ratio"}  # two numbers: the metrics budget
    neck = pd.read_csv(tmp_path / "a" / "bottleneck.csv")
    assert len(neck) == 2 * 2 * 2 and neck["ratio"].notna().all() and (neck["n_pairs"] > 0).all()
    assert metrics["bottleneck"]["ratio"] == neck[neck["model"] == "trained"]["ratio"].max()
    assert metrics["bottleneck"]["control_ratio"] == neck[neck["model"] == "random"]["ratio"].max()
    top = table.loc[table[table["hypothesis"] == "target"]["score"].idxmax()]
    assert (metrics["target"]["layer"], metrics["target"]["head"]) == (top["layer"], top["head"])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_bad_input_is_one_error_line_and_writes_nothing(run_dir, tmp_path):
    import shutil

    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    bad = work / "data" / "tokens" / "probe.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # a Parquet file cut in half
    proc = subprocess.run([sys.executable, "-m", "stages.heads", *stage_args(work, tmp_path / "out")],
                          capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and str(bad) in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_bad_params_are_one_error_line(run_dir, tmp_path, capsys):
    import yaml

    from mazesearch.io import stage_main
    from stages.heads import main

    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    params["heads"]["n_mazes"] = 41  # the probe set has 40
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = stage_args(run_dir, tmp_path / "out")
    args[1] = str(tmp_path / "params.yaml")
    with pytest.raises(SystemExit) as exit_info:
        stage_main(lambda: main(args))
    assert exit_info.value.code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "heads.n_mazes=41" in lines[0]
    assert not (tmp_path / "out").exists()
