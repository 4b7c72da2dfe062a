"""Activation patching (mazesearch.interp.patching): position groups on hand-checked sequences,
patching identities (the whole run restores the source; positions before the edit change
nothing), and every number against TransformerLens' own per-position patching of one pair."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from helpers import one_torch_thread, rel_err
from mazesearch.data.maze import edge_endpoints
from mazesearch.data.tokens import Vocab, encode
from mazesearch.data.vocab import PATH_END, TARGET_START
from mazesearch.interp import patching
from mazesearch.interp.forks import cell_tokens
from probe_fixtures import tree_mazes

VOCAB = Vocab.build(4)
N = 4


def target_moves(n_pairs: int, seed: int = 0):
    """Hand-rolled target-move twins (networkx paths): same walls, a new target whose path leaves
    the old one at some cell k. Returns pair_batch's arguments."""
    mazes = tree_mazes(N, 4 * n_pairs, seed)
    tokens = encode(mazes, VOCAB)
    ct = cell_tokens(VOCAB, N)
    end = VOCAB.token_to_id[PATH_END]
    out = {k: [] for k in ("clean", "corrupt", "prompt_len", "decision", "edit", "clean_next", "corrupt_next")}
    ends = edge_endpoints(N)
    for i in range(len(mazes)):
        tree = nx.Graph([tuple(ends[e]) for e in np.flatnonzero(mazes.open[i])])
        path = [int(c) for c in mazes.path(i)]
        for t2 in range(N * N):
            new = nx.shortest_path(tree, path[0], t2)
            k = 0
            while k + 1 < min(len(new), len(path)) and new[k + 1] == path[k + 1]:
                k += 1
            if k + 1 >= min(len(new), len(path)):
                continue  # one path extends the other: no decision changes
            seq = tokens.tokens(i).astype(np.int64)
            p = int(tokens.prompt_len[i])
            tpos = int(np.flatnonzero(seq == VOCAB.token_to_id[TARGET_START])[0]) + 1
            twin = seq[:p].copy()
            twin[tpos] = ct[t2]
            out["clean"].append(seq)
            out["corrupt"].append(np.concatenate([twin, ct[new], [end]]))
            out["prompt_len"].append(p)
            out["decision"].append(p + k)
            out["edit"].append(np.array([tpos]))
            out["clean_next"].append(path[k + 1])
            out["corrupt_next"].append(new[k + 1])
            break
        if len(out["clean"]) == n_pairs:
            break
    return out, ct


def batch_of(pairs, ct) -> patching.PairBatch:
    return patching.pair_batch(pairs["clean"], pairs["corrupt"], np.array(pairs["prompt_len"]),
                               np.array(pairs["decision"]), pairs["edit"], np.array(pairs["clean_next"]),
                               np.array(pairs["corrupt_next"]), ct, VOCAB)


@pytest.fixture(scope="module")
def bridge():
    from mazesearch.interp.bridge import to_bridge
    from mazesearch.model.gpt import GPT, ModelConfig

    cfg = ModelConfig(d_vocab=len(VOCAB), d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=128)
    with one_torch_thread(), torch.no_grad():
        yield to_bridge(GPT(cfg, seed=3).eval())


def test_groups_mark_the_right_tokens():
    pairs, ct = target_moves(6)
    b = batch_of(pairs, ct)
    assert b.clean.shape[1] == max(pairs["decision"]) + 1
    for i in range(6):
        seq, d, p = pairs["clean"][i], pairs["decision"][i], pairs["prompt_len"][i]
        marked = {g: np.flatnonzero(b.masks[g][i].numpy()).tolist() for g in patching.GROUPS}
        assert marked["edit"] == marked["target"] == pairs["edit"][i].tolist()
        end = int(np.flatnonzero(seq == VOCAB.token_to_id["<ADJLIST_END>"])[0])
        assert marked["other_edges"] == list(range(1, end)) and seq[0] == VOCAB.token_to_id["<ADJLIST_START>"]
        assert seq[marked["origin"][0] - 1] == VOCAB.token_to_id["<ORIGIN_START>"]
        assert marked["path_start"] == [p - 1] and seq[p - 1] == VOCAB.token_to_id["<PATH_START>"]
        assert marked["path"] == list(range(p, d)) and marked["decision"] == [d]
        assert marked["all"] == list(range(d + 1))
        assert int(b.clean_token[i]) == ct[pairs["clean_next"][i]] != int(b.corrupt_token[i])


def test_pair_batch_rejects_pairs_that_differ_outside_the_edit():
    pairs, ct = target_moves(3)
    pairs["corrupt"][1] = pairs["corrupt"][1].copy()
    pairs["corrupt"][1][1] = VOCAB.pad_id  # an adjacency-list token changed too
    with pytest.raises(ValueError, match="pair 1: tokens differ"):
        batch_of(pairs, ct)
    pairs, ct = target_moves(3)
    pairs["decision"][0] = pairs["prompt_len"][0] - 2  # inside the prompt
    with pytest.raises(ValueError, match="pair 0: the decision"):
        batch_of(pairs, ct)


def test_normalised_on_hand_numbers():
    clean, corrupt = np.array([3.0, 5.0]), np.array([-1.0, -3.0])  # means 4 and -2: gap 6
    patched = np.array([[4.0, 4.0], [-2.0, -2.0], [1.0, 1.0]])
    assert np.allclose(patching.normalised(patched, clean, corrupt), [1.0, 0.0, 0.5])
    assert np.isnan(patching.normalised(patched, clean, clean)).all()


def test_head_ranking_orders_by_damage_across_kinds():
    a = np.array([[1.0, 0.2], [0.9, 0.5]])  # damage 0, .8, .1, .5
    b = np.array([[1.0, 0.4], [0.7, 0.5]])  # damage 0, .6, .3, .5
    assert patching.head_ranking([a, b]) == [(0, 1), (1, 1), (1, 0), (0, 0)]
    c = np.array([[np.nan, 0.5], [0.2, np.nan]])  # unscored heads last, in model order
    assert patching.head_ranking([c]) == [(1, 0), (0, 1), (0, 0), (1, 1)]


@pytest.fixture(scope="module")
def result(bridge):
    pairs, ct = target_moves(12)
    b = batch_of(pairs, ct)
    with one_torch_thread():
        return pairs, ct, b, patching.patch_pairs(bridge, b)


def test_patching_identities(bridge, result):
    pairs, ct, b, r = result
    g = {name: j for j, name in enumerate(patching.GROUPS)}
    assert r.ld_clean.shape == r.ld_corrupt.shape == (12,)
    den, noi = r.recovered("resid", "denoise"), r.recovered("resid", "noise")
    assert den.shape == (3, len(patching.GROUPS)) and r.heads["denoise"].shape == (2, 2, 12)
    # the whole run patched: the source run exactly, at every layer
    assert np.allclose(den[:, g["all"]], 1.0, atol=1e-4) and np.allclose(noi[:, g["all"]], 0.0, atol=1e-4)
    # the origin and the adjacency list precede the moved target: identical activations in both runs
    for group in ("origin", "other_edges"):
        assert np.allclose(den[:, g[group]], 0.0, atol=1e-5) and np.allclose(noi[:, g[group]], 1.0, atol=1e-5)
    # at the embedding only the edited tokens differ; after the last block only the decision matters
    assert np.allclose(den[0, g["edit"]], 1.0, atol=1e-4) and np.allclose(den[0, g["decision"]], 0.0, atol=1e-5)
    assert np.allclose(den[-1, g["decision"]], 1.0, atol=1e-4) and np.allclose(den[-1, g["edit"]], 0.0, atol=1e-5)
    # the unpatched ld are the bridge's own logits at the decision
    with torch.no_grad():
        at = bridge(b.clean)[torch.arange(12), b.decision_pos]
    assert rel_err(r.ld_clean, (at[torch.arange(12), b.clean_token] - at[torch.arange(12), b.corrupt_token]).numpy()) < 1e-4


def test_every_position_agrees_with_transformer_lens_on_one_pair(bridge, result):
    """Our group patch at the decision (and at the edit) of one pair equals TL's
    get_act_patch_resid_pre at that (layer, position); heads equal a hand-written hook patch."""
    from transformer_lens import patching as tl_patching

    pairs, ct, b, r = result
    g = {name: j for j, name in enumerate(patching.GROUPS)}
    for i in (0, 5):
        one = patching.PairBatch(clean=b.clean[i:i + 1], corrupt=b.corrupt[i:i + 1],
                                 decision_pos=b.decision_pos[i:i + 1], clean_token=b.clean_token[i:i + 1],
                                 corrupt_token=b.corrupt_token[i:i + 1],
                                 masks={k: m[i:i + 1] for k, m in b.masks.items()})
        metric = patching.logit_diff_fn(one)
        with torch.no_grad():
            _, clean_cache = bridge.run_with_cache(one.clean)
            tl = tl_patching.get_act_patch_resid_pre(bridge, one.corrupt, clean_cache,
                                                     lambda logits: metric(logits).sum())  # [layers, pos]
        d, e = int(b.decision_pos[i]), int(pairs["edit"][i][0])
        for layer in range(tl.shape[0]):
            for group, pos in (("decision", d), ("edit", e)):
                ours = r.resid["denoise"][layer, g[group], i]
                assert abs(ours - float(tl[layer, pos])) <= 1e-4 * max(1.0, abs(float(tl[layer, pos])))
        # head (1, 0) at every position, by hand
        def put(z, hook):
            z[:, :, 0] = clean_cache["blocks.1.attn.hook_z"][:, :, 0]
            return z

        with torch.no_grad():
            hand = float(metric(bridge.run_with_hooks(one.corrupt, fwd_hooks=[("blocks.1.attn.hook_z", put)])))
        assert abs(r.heads["denoise"][1, 0, i] - hand) <= 1e-4 * max(1.0, abs(hand))
