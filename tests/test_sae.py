"""TopK sparse autoencoder (mazesearch.interp.sae): a planted dictionary it must recover, an
untrained control, hand-built SAEs with known FVU/L0, and scikit-learn as the AUROC oracle."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers import one_torch_thread
from mazesearch.io import InputError
from mazesearch.interp.sae import (
    SAEConfig, TopKSAE, feature_aurocs, load_sae, match_features, sae_codes, sae_metrics, save_sae, train_sae,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def planted(n=20000, d=16, m=24, seed=0, noise=0.02):
    """``X = S @ D + noise``: ``D`` m unit directions in d dims (m > d: superposition), each row
    of ``S`` 2 or 3 active features with magnitudes in [0.5, 2]. Returns (X float32 [n, d], D, S)."""
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(m, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    order = np.argsort(rng.random((n, m)), axis=1)                 # a random feature order per row
    active = order < rng.integers(2, 4, size=n)[:, None]           # [n, m], 2-3 True per row
    S = np.where(active, rng.uniform(0.5, 2.0, size=(n, m)), 0.0)
    X = S @ D + noise * rng.normal(size=(n, d))
    return X.astype(np.float32), D, S


CFG = SAEConfig(d_in=16, n_features=48, k=3, steps=2000, batch_size=256, lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def trained():
    X, D, S = planted()
    sae, hist = train_sae(X, CFG)
    return X, D, S, sae, hist


def hand_sae(d_in, n_features, k, **weights) -> TopKSAE:
    sae = TopKSAE(SAEConfig(d_in=d_in, n_features=n_features, k=k, steps=0, batch_size=1, lr=0.0, seed=0))
    with torch.no_grad():
        for name, value in weights.items():
            getattr(sae, name).copy_(torch.as_tensor(value, dtype=torch.float32))
    return sae


# ---------------------------------------------------------------------------- planted dictionary


def test_recovers_planted_dictionary(trained):
    X, D, S, sae, hist = trained
    m = sae_metrics(sae, X)
    assert m["fvu"] < 0.1 and m["n_rows"] == len(X)
    assert m["l0"] <= CFG.k
    max_cos = np.abs(D @ sae.W_dec.detach().numpy().T).max(1)     # [24] best decoder row per true direction
    assert (max_cos > 0.9).all(), max_cos
    assert max_cos.mean() > 0.98
    matches = match_features(sae_codes(sae, X), S > 0)
    auc = np.array([matches[j]["auroc"] for j in range(S.shape[1])])
    assert (auc > 0.95).mean() >= 2 / 3, auc
    assert auc.mean() > 0.95
    assert all(v["sign"] == 1 and v["mean_true"] > v["mean_false"] for v in matches.values())
    # the history is a loss curve: ~20 points ending at the last step, falling
    assert len(hist["step"]) in (20, 21) and hist["step"][-1] == CFG.steps - 1
    assert hist["fvu"][-1] < 0.5 * hist["fvu"][0]


def test_untrained_control_is_much_worse(trained):
    X, _, _, sae, _ = trained
    untrained, hist = train_sae(X, dataclasses.replace(CFG, steps=0))
    assert hist["step"] == []
    assert sae_metrics(untrained, X)["fvu"] > 5 * sae_metrics(sae, X)["fvu"]


def test_decoder_rows_stay_unit_norm(trained):
    W = trained[3].W_dec.detach()
    assert torch.allclose(W.norm(dim=1), torch.ones(len(W)), atol=1e-5)
    assert torch.equal(trained[3].direction(5), W[5])


def test_decoder_gradient_is_projected_off_the_rows():
    """In d_in = 1 every decoder gradient is radial: projected out, the decoder never moves,
    even at a learning rate that would flip the sign of a row in one unprojected Adam step."""
    X = np.random.default_rng(3).normal(size=(500, 1)).astype(np.float32)
    cfg = SAEConfig(d_in=1, n_features=8, k=2, steps=20, batch_size=64, lr=3.0, seed=0, aux_coef=0.0)
    init = train_sae(X, dataclasses.replace(cfg, steps=0))[0].W_dec
    assert torch.equal(train_sae(X, cfg)[0].W_dec, init)


def test_codes_are_topk_sparse_and_nonnegative(trained):
    X, _, _, sae, _ = trained
    codes = sae_codes(sae, X[:2000])
    assert codes.shape == (2000, CFG.n_features) and (codes >= 0).all()
    assert ((codes != 0).sum(1) <= CFG.k).all()
    with torch.no_grad():
        assert np.allclose(sae.decode(torch.from_numpy(codes)).numpy(), sae(torch.from_numpy(X[:2000])).numpy())


def test_raw_scale_in_and_out():
    """The stored scale makes the SAE blind to the units of X: 1000 X trains to the same codes."""
    X, _, _ = planted(n=4000)
    cfg = dataclasses.replace(CFG, steps=300)
    small, big = train_sae(X, cfg)[0], train_sae(1000 * X, cfg)[0]
    Xs = torch.from_numpy(X) * small.scale
    assert abs(Xs.pow(2).sum(1).mean().item() - cfg.d_in) < 1e-3 * cfg.d_in
    assert abs(sae_metrics(small, X)["fvu"] - sae_metrics(big, 1000 * X)["fvu"]) < 1e-3
    with torch.no_grad():
        assert torch.allclose(1000 * small(torch.from_numpy(X)), big(torch.from_numpy(1000 * X)), rtol=1e-3, atol=1e-1)


def test_auxk_runs_on_dead_latents():
    X, _, _ = planted(n=4000)
    cfg = dataclasses.replace(CFG, n_features=96, steps=300, dead_steps=20)
    _, hist = train_sae(X, cfg)
    assert hist["dead_frac"] > 0 and max(hist["aux_loss"]) > 0
    _, hist = train_sae(X, dataclasses.replace(cfg, aux_coef=0.0))
    assert max(hist["aux_loss"]) == 0


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_weights_other_seed_differs():
    X, _, _ = planted(n=3000)
    cfg = dataclasses.replace(CFG, steps=150)
    rng_before = torch.get_rng_state()
    a, ha = train_sae(X, cfg)
    assert torch.equal(torch.get_rng_state(), rng_before)       # no global RNG
    b, hb = train_sae(torch.from_numpy(X), cfg)
    assert ha == hb
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    c, _ = train_sae(X, dataclasses.replace(cfg, seed=1))
    assert not torch.equal(a.W_dec, c.W_dec)


# ---------------------------------------------------------------------------- hand-built SAEs


def test_encode_takes_top_k_signed_preactivations():
    sae = hand_sae(4, 4, 2, W_enc=np.eye(4), W_dec=np.eye(4))
    codes = sae.encode(torch.tensor([[5.0, -10.0, 3.0, 1.0], [-1.0, -2.0, -3.0, 0.5]]))
    assert codes.tolist() == [[5.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.5]]


def test_fvu_and_l0_on_hand_built_saes():
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(500, 4)) * [1, 2, 3, 4] + 7).astype(np.float32)
    # rows +e_i and -e_i with k = d_in: the d_in nonnegative pre-activations are |x_i|: exact
    W = np.concatenate([np.eye(4), -np.eye(4)])
    m = sae_metrics(hand_sae(4, 8, 4, W_dec=W, W_enc=W.T, b_dec=X.mean(0)), X, batch=128)
    assert m["fvu"] < 1e-10 and m["l0"] == 4 and m["dead_frac"] == 0 and m["n_rows"] == 500
    # no code ever fires: the reconstruction is b_dec / scale = the mean: FVU 1
    mean = hand_sae(4, 8, 2, W_enc=np.zeros((4, 8)), b_enc=-np.ones(8), b_dec=2 * X.mean(0), scale=2.0)
    m = sae_metrics(mean, X, batch=128)
    assert m["fvu"] == pytest.approx(1.0, abs=1e-5) and m["l0"] == 0 and m["dead_frac"] == 1


# ---------------------------------------------------------------------------- matching features


def test_match_features_hand_built():
    rng = np.random.default_rng(0)
    N = 400
    y0 = rng.random(N) < 0.3
    y2 = rng.random(N) < 0.5
    codes = np.zeros((N, 5), np.float32)
    codes[:, 0] = rng.random(N) * (rng.random(N) < 0.4)         # noise
    codes[:, 2] = y0 * (1 + rng.random(N))                       # fires exactly when label 0 is true
    codes[:, 3] = ~y2 * (0.5 + rng.random(N))                    # fires exactly when label 2 is false
    # feature 4 never fires
    labels = np.stack([y0, np.ones(N, bool), y2], axis=1)
    out = match_features(codes, labels)
    assert out[0]["feature"] == 2 and out[0]["auroc"] == 1.0 and out[0]["sign"] == 1
    assert out[0]["mean_true"] == pytest.approx(codes[y0, 2].mean()) and out[0]["mean_false"] == 0
    assert out[1] is None
    assert out[2]["feature"] == 3 and out[2]["auroc"] == 0.0 and out[2]["sign"] == -1
    assert out[2]["mean_true"] == 0 and out[2]["mean_false"] > 0.5
    auc = feature_aurocs(codes, labels)
    assert np.isnan(auc[1]).all() and auc[0, 4] == 0.5 and auc[2, 4] == 0.5
    named = match_features(codes, pd.DataFrame(labels, columns=["a", "const", "b"]))
    assert named["a"] == out[0] and named["const"] is None and named["b"] == out[2]


def test_feature_aurocs_match_sklearn():
    rng = np.random.default_rng(2)
    N, F, L = 300, 7, 4
    codes = np.where(rng.random((N, F)) < 0.3, rng.integers(0, 4, (N, F)), 0).astype(np.float32)  # many ties
    labels = rng.random((N, L)) < rng.uniform(0.1, 0.6, L)
    labels[:, 1] |= codes[:, 3] > 1                              # something to find
    auc = feature_aurocs(codes, labels, chunk_elems=2 * N)       # 2 features per chunk
    want = np.array([[roc_auc_score(labels[:, l], codes[:, f]) for f in range(F)] for l in range(L)])
    assert np.allclose(auc, want, atol=1e-12)
    best = match_features(codes, labels)
    for l in range(L):
        assert abs(best[l]["auroc"] - 0.5) == pytest.approx(np.abs(want[l] - 0.5).max())


# ---------------------------------------------------------------------------- save / load


def test_save_load_round_trip(trained, tmp_path):
    X, _, _, sae, _ = trained
    save_sae(sae, tmp_path / "sae")
    back = load_sae(tmp_path / "sae")
    assert back.cfg == sae.cfg
    assert back.state_dict().keys() == sae.state_dict().keys()
    for key, value in sae.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    assert np.array_equal(sae_codes(back, X[:500]), sae_codes(sae, X[:500]))
    (tmp_path / "sae" / "sae.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="sae.safetensors"):
        load_sae(tmp_path / "sae")
    with pytest.raises(InputError, match="sae_config.json"):
        load_sae(tmp_path / "missing")
