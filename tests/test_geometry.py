"""mazesearch.interp.geometry and stage geometry: cell tokens read back as text, Spearman and its
permutation p-value against scipy loops, a planted lattice embedding (Spearman exactly 1), planted
OV/QK circuits that map every cell to its neighbours, the circuits against the model's own
modules, neighbour scores against brute force and sklearn, and the stage on a tiny trained run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from helpers import VOCAB, one_torch_thread, rel_err
from interp_fixtures import build_tiny_run, stage_args, tree_bytes
from mazesearch.data.tokens import Vocab
from mazesearch.interp.geometry import (
    cell_token_ids, head_circuits, lattice_distance, neighbour_chance, neighbour_scores, pca_2d,
    spearman_lattice,
)
from mazesearch.model.gpt import GPT, ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def test_cell_tokens_are_the_coordinates():
    ids = cell_token_ids(VOCAB, 5, "unary")
    pair = cell_token_ids(VOCAB, 5, "pair")
    for r in range(5):
        for c in range(5):
            assert VOCAB.id_to_token[ids[r * 5 + c, 0]] == f"({r},{c})"
            assert [VOCAB.id_to_token[i] for i in pair[r * 5 + c]] == [f"({r},", f",{c})"]


def thermometer(n: int) -> np.ndarray:
    """Cells whose squared Euclidean distance is exactly their Manhattan distance."""
    r, c = np.divmod(np.arange(n * n), n)
    return np.concatenate([(r[:, None] > np.arange(n - 1)), (c[:, None] > np.arange(n - 1))], axis=1).astype(float)


def test_spearman_and_permutation_p_value_match_scipy_loops():
    n, n_perm = 4, 60
    x = np.random.default_rng(0).normal(size=(n * n, 6))
    got = spearman_lattice(x, n, "euclidean", n_perm, np.random.default_rng(5))
    iu, ju = np.triu_indices(n * n, 1)
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    lat = lattice_distance(n)
    rho = scipy.stats.spearmanr(dist[iu, ju], lat[iu, ju]).statistic
    assert got["rho"] == pytest.approx(rho, rel=1e-9)
    rng = np.random.default_rng(5)  # the same shuffles, one at a time
    null = [scipy.stats.spearmanr(dist[iu, ju], lat[np.ix_(p, p)][iu, ju]).statistic
            for p in (rng.permutation(n * n) for _ in range(n_perm))]
    assert got["p_value"] == pytest.approx((1 + sum(v >= rho - 1e-12 for v in null)) / (1 + n_perm), rel=1e-12)
    assert got["null_q95"] == pytest.approx(np.quantile(null, 0.95), rel=1e-9)
    cos = spearman_lattice(x, n, "cosine")["rho"]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert cos == pytest.approx(scipy.stats.spearmanr(1 - (unit @ unit.T)[iu, ju], lat[iu, ju]).statistic, rel=1e-9)


def test_a_planted_lattice_embedding_has_spearman_one():
    got = spearman_lattice(thermometer(5), 5, "euclidean", 200, np.random.default_rng(0))
    assert got["rho"] == pytest.approx(1.0, rel=1e-12) and got["p_value"] == pytest.approx(1 / 201)
    noise = spearman_lattice(np.random.default_rng(1).normal(size=(25, 16)), 5, "euclidean", 200,
                             np.random.default_rng(0))
    assert abs(noise["rho"]) < 0.15 and noise["p_value"] > 0.05
    # a cell off by one (labels shifted) destroys it
    assert spearman_lattice(np.roll(thermometer(5), 1, axis=0), 5)["rho"] < 0.9


def test_neighbour_scores_against_brute_force_and_sklearn():
    n = 3
    assert neighbour_chance(3) == pytest.approx(24 / (9 * 8)) and neighbour_chance(2) == pytest.approx(2 / 3)
    m = np.random.default_rng(2).normal(size=(2, 9, 9))
    got = neighbour_scores(m, n)
    nbr = lattice_distance(n) == 1
    for b in range(2):
        centred = m[b] - m[b].mean(0)
        top1, auroc, self1 = [], [], []
        for i in range(9):
            others = [j for j in range(9) if j != i]
            best = max(others, key=lambda j: centred[i, j])
            top1.append(nbr[i, best])
            auroc.append(roc_auc_score(nbr[i, others], centred[i, others]))
            self1.append(int(np.argmax(centred[i])) == i)
        assert got["neighbour_top1"][b] == pytest.approx(np.mean(top1))
        assert got["neighbour_auroc"][b] == pytest.approx(np.mean(auroc), rel=1e-12)
        assert got["self_top1"][b] == pytest.approx(np.mean(self1))


SMALL = Vocab.build(3)  # 29 tokens: one-hot embeddings fit in d_model 32


def planted_circuits() -> GPT:
    """No normalization, one-hot token embeddings. Head 0: QK and OV are the lattice adjacency
    of the cell tokens (a cell attends to, and writes, its neighbours). Head 1: OV copies."""
    d, V = 32, len(SMALL)
    cfg = ModelConfig(d_model=d, n_layers=1, n_heads=2, d_head=d, d_mlp=4, n_ctx=16, d_vocab=V,
                      normalization="none", positional="rotary")
    gpt = GPT(cfg, seed=0)
    ids = cell_token_ids(SMALL, 3)[:, 0]
    adj = torch.zeros(d, d)
    adj[np.ix_(ids, ids)] = torch.from_numpy((lattice_distance(3) == 1).astype(np.float32))
    with torch.no_grad():
        gpt.embed.weight.zero_()
        gpt.embed.weight[:, :V] = torch.eye(V)
        gpt.unembed.weight.copy_(gpt.embed.weight)
        attn = gpt.blocks[0].attn
        attn.q.weight[:d] = torch.eye(d)
        attn.k.weight[:d] = adj
        attn.v.weight[:d] = adj
        attn.v.weight[d:] = torch.eye(d)
        attn.o.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)], dim=1))
    return gpt


def test_planted_circuits_map_cells_to_their_neighbours():
    got = {name: neighbour_scores(m, 3) for name, m in head_circuits(planted_circuits(), cell_token_ids(SMALL, 3)).items()}
    for name in ("qk", "ov_embed", "ov_unembed"):
        assert got[name]["neighbour_top1"][0, 0] == 1.0 and got[name]["neighbour_auroc"][0, 0] == 1.0, name
    assert got["ov_embed"]["self_top1"][0, 1] == 1.0 and got["ov_embed"]["self_top1"][0, 0] == 0.0
    # off by one cell (every cell read as the next token id): the planted structure is gone
    shifted = head_circuits(planted_circuits(), cell_token_ids(SMALL, 3) + 1)
    assert neighbour_scores(shifted["qk"], 3)["neighbour_top1"][0, 0] < 0.7


def test_circuits_equal_the_models_own_modules():
    """An LN model at random init: each circuit recomputed by calling the block's modules."""
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=16, d_vocab=len(VOCAB),
                      positional="rotary")
    gpt = GPT(cfg, seed=3)
    with torch.no_grad():  # non-trivial LayerNorm parameters
        for block in [*gpt.blocks, gpt]:
            ln = block.ln1 if block is not gpt else gpt.ln_final
            ln.weight.normal_(1.0, 0.3, generator=torch.Generator().manual_seed(1))
            ln.bias.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(2))
    ids = cell_token_ids(VOCAB, 4)
    got = head_circuits(gpt, ids)
    e = gpt.embed.weight.detach()[torch.from_numpy(ids[:, 0])]  # [cells, d]
    with torch.no_grad():
        for layer, block in enumerate(gpt.blocks):
            x = block.ln1(e)
            q, k, v = (getattr(block.attn, p)(x) - getattr(block.attn, p).bias for p in "qkv")  # [cells, H*dh]
            for h in range(2):
                sl = slice(16 * h, 16 * (h + 1))
                written = v[:, sl] @ block.attn.o.weight[:, sl].T  # [cells, d]
                assert rel_err(got["qk"][layer, h], q[:, sl] @ k[:, sl].T) < 5e-5
                assert rel_err(got["ov_embed"][layer, h], written @ e.T) < 5e-5
                # ln_final on a direction: centre it, scale by the weight (the 1/std is common)
                logits = ((written - written.mean(1, keepdim=True)) * gpt.ln_final.weight) @ gpt.unembed.weight.T
                assert rel_err(got["ov_unembed"][layer, h], logits[:, torch.from_numpy(ids[:, 0])]) < 5e-5


def test_pca_matches_sklearn_up_to_sign():
    x = np.random.default_rng(4).normal(size=(50, 6)) * np.array([5, 3, 1, 1, 1, 1])
    got, ratio = pca_2d(x)
    ref = PCA(2, svd_solver="full").fit(x)
    np.testing.assert_allclose(np.abs(got), np.abs(ref.transform(x)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-9)


# ---------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = build_tiny_run(tmp_path_factory.mktemp("run"))
    (root / "scores.csv").write_text(  # the heads stage's columns; L1H0 the top lattice head
        "hypothesis,layer,head,score\nlattice_adjacency,0,0,0.2\nlattice_adjacency,0,1,0.3\n"
        "lattice_adjacency,1,0,0.9\nlattice_adjacency,1,1,0.1\ntarget,0,0,0.99\n")
    return root


def test_stage_writes_deterministic_reports(run_dir, tmp_path):
    from stages.geometry import main

    with one_torch_thread():
        main(stage_args(run_dir, tmp_path / "a", heads_scores=str(run_dir / "scores.csv")))
        main(stage_args(run_dir, tmp_path / "b", heads_scores=str(run_dir / "scores.csv")))
        main(stage_args(run_dir, tmp_path / "c"))  # no heads scores: no top-head numbers
    a = tree_bytes(tmp_path / "a")
    assert a == tree_bytes(tmp_path / "b")
    assert set(a) == {"metrics.json", "details.json", "embedding_pca.png", "residual_pca.png", "svd.png"}
    metrics, details = json.loads(a["metrics.json"]), json.loads(a["details.json"])
    assert details["n_cells"] == 9 and details["circuits"]["top_heads"] == [{"layer": 1, "head": 0},
                                                                            {"layer": 0, "head": 1}]
    heads = {(h["layer"], h["head"]): h for h in details["circuits"]["heads"]}
    want = np.mean([heads[1, 0]["trained"]["qk"]["neighbour_top1"], heads[0, 1]["trained"]["qk"]["neighbour_top1"]])
    assert metrics["qk"]["top_heads"] == pytest.approx(want, abs=1e-6)
    summary = details["circuits"]["summary"]["qk"]
    assert summary["chance"] == pytest.approx(1 / 3, abs=1e-6)
    assert summary["best"] == max(h["trained"]["qk"]["neighbour_top1"] for h in heads.values())
    assert set(metrics["qk"]) == {"top_heads", "top_heads_control"}  # chance, best heads: details only
    # SVD of the weights: the headline is the top heads' OV and QK alignment, per role
    assert set(metrics) == {"spearman", "ov_embed", "ov_unembed", "qk", "svd"}
    svd = {m["name"]: m for m in details["svd"]["matrices"]}
    assert len(svd) == 2 * (2 * 2 + 2) and details["svd"]["top_k"] == 3  # 2 layers: 2 heads x (OV, QK), MLP in, out
    for role in ("trained", "random_init", "spectrum_matched"):
        want = np.mean([svd[f"{h}.{c}"][role]["score"] for h in ("L1H0", "L0H1") for c in ("ov", "qk")])
        assert metrics["svd"][role] == pytest.approx(want, abs=2e-6)
        assert 0 <= metrics["svd"][role] <= 1
    bare = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert bare["qk"]["top_heads"] is None and bare["spearman"] == metrics["spearman"]
    assert bare["svd"] == {"trained": None, "random_init": None, "spectrum_matched": None}


def test_bad_heads_scores_is_one_error_line_and_writes_nothing(run_dir, tmp_path):
    bad = tmp_path / "scores.csv"
    bad.write_text("hypothesis,score\nlattice_adjacency,0.5\n")  # no layer / head columns
    proc = subprocess.run([sys.executable, "-m", "stages.geometry",
                           *stage_args(run_dir, tmp_path / "out", heads_scores=str(bad))],
                          capture_output=True, text=True, cwd=str(ROOT))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and str(bad) in errors[0] and "lacks columns" in errors[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_a_truncated_model_is_one_error_line(run_dir, tmp_path, capsys):
    from mazesearch.io import stage_main
    from stages.geometry import main

    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    weights = work / "models" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(SystemExit) as exit_info:
        stage_main(lambda: main(stage_args(work, tmp_path / "out")))
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1 and str(weights) in errors[0]
    assert not (tmp_path / "out").exists()
