"""Stage reach's MLP probe (mazesearch.interp.reach_mlp): a planted NONLINEAR code of "cell within
k = 1 move of the anchor" (per cell, the magnitude of a feature of random sign) that the linear probe cannot read and
the MLP can, its gap over a control store without the signal, a control store WITH the signal (the
gap, not the raw score, must decide), and byte-identical reruns."""

import json

import numpy as np
import pytest

from mazesearch.interp import reach
from mazesearch.interp.reach_mlp import mlp_column_scores
from mazesearch.params import ProbesSpec, ReachSpec
from probe_fixtures import FakeStore, store_index, tree_mazes
from test_reach import nx_distances

LAYERS = ["embed", "blocks.0.hook_resid_post"]
SPEC = ReachSpec(max_k=1, min_balanced_accuracy=0.8, min_selectivity=0.1, mlp_hidden=48, mlp_max_iter=150,
                 mlp_max_rows=2000)


def radial_code(bits: np.ndarray, rng) -> np.ndarray:
    """``bits bool [rows, K]`` -> ``[rows, K]``: per bit a feature of random sign whose MAGNITUDE is
    the bit (1 or 3), plus noise. Its mean is 0 either way, so no linear read-out beats chance;
    |x| > 2 (two ReLUs) reads it exactly."""
    s = rng.choice([-1.0, 1.0], size=bits.shape)
    return s * (1.0 + 2.0 * bits) + 0.1 * rng.normal(size=bits.shape)


def planted_radial(batch, control_has_signal: bool = False, seed: int = 0):
    """Trained: embed is noise, blocks.0 the radial code of the k = 1 bits of the row's anchor (target
    at path_start, current cell at path rows). Random-init: noise at both layers, or (with
    ``control_has_signal``) the very same arrays as the trained store."""
    rng = np.random.default_rng(seed)
    index = store_index(batch)
    bits = (nx_distances(batch, index) >= 0) & (nx_distances(batch, index) <= 1)  # [rows, 16]
    code = radial_code(bits, rng)
    noise = lambda: rng.normal(size=code.shape)  # noqa: E731
    trained = {"embed": noise(), "blocks.0.hook_resid_post": code}
    random_init = dict(trained) if control_has_signal else {"embed": noise(), "blocks.0.hook_resid_post": noise()}
    return FakeStore(index, trained), FakeStore(index, random_init)


@pytest.fixture(scope="module")
def batch():
    return tree_mazes(4, 600, seed=5)


@pytest.fixture(scope="module")
def details(batch):
    trained, random_init = planted_radial(batch)
    return reach.run_reach(batch, trained, random_init, ProbesSpec(), SPEC)


def test_radial_columns_need_the_mlp():
    rng = np.random.default_rng(1)
    bits = rng.random((600, 3)) < 0.5
    X = radial_code(bits, rng)
    mlp = mlp_column_scores(X[:400], bits[:400], X[400:], bits[400:], hidden=16, max_iter=150, seed=0)
    assert (mlp > 0.95).all(), mlp
    lin = reach.column_scores(X[:400], bits[:400], X[400:], bits[400:], C=1.0, max_iter=200)
    assert (np.abs(lin - 0.5) < 0.1).all(), lin
    single = mlp_column_scores(X[:400], bits[:400, :1], X[400:], bits[400:, :1], hidden=16, max_iter=150, seed=0)
    assert single[0] == pytest.approx(mlp[0], abs=0.05)  # one column: sklearn's binary path


def test_planted_nonlinear_reach_is_found_by_the_mlp_only(details):
    head = reach.headline(details)
    assert set(head) == {"target", "current", "mlp_largest"}
    assert sum(len(v) for v in head.values()) == 2 * len(LAYERS) + 2
    assert head["mlp_largest"] == {"target": 1, "current": 1}
    for version in ("target", "current"):
        assert head[version] == {layer: 0 for layer in LAYERS}  # the linear probe reads nothing
        d = details["versions"][version]
        mlp = d["mlp"]["layers"]
        assert mlp["embed"]["reach"] == 0 and mlp["blocks.0.hook_resid_post"]["reach"] == 1
        s = mlp["blocks.0.hook_resid_post"]["by_k"]["1"]
        assert s["trained"] > 0.9
        assert s["gap"]["vs_random_init"] > 0.3 and s["gap"]["vs_stronger"] > 0.3  # large gap over a no-signal control
        assert abs(s["random_init"] - 0.5) < 0.1 and abs(s["permuted"] - 0.5) < 0.1
        lin = d["layers"]["blocks.0.hook_resid_post"]["by_k"]["1"]
        assert abs(lin["trained"] - 0.5) < 0.1, lin


def test_the_mlp_reach_is_its_gap_over_the_control_not_its_raw_score(batch, details):
    for version in ("target", "current"):  # every gap is trained minus the stronger control
        for layer in LAYERS:
            s = details["versions"][version]["mlp"]["layers"][layer]["by_k"]["1"]
            assert s["gap"]["vs_stronger"] == pytest.approx(s["trained"] - max(s["random_init"], s["permuted"]),
                                                            abs=2e-6)
            assert s["gap"]["vs_random_init"] == pytest.approx(s["trained"] - s["random_init"], abs=2e-6)
    # a control that decodes the code as well as the trained model: a high raw score, no gap, no reach
    trained, same = planted_radial(batch, control_has_signal=True)
    d = reach.run_reach(batch, trained, same, ProbesSpec(), SPEC)
    assert reach.headline(d)["mlp_largest"] == {"target": 0, "current": 0}
    s = d["versions"]["target"]["mlp"]["layers"]["blocks.0.hook_resid_post"]["by_k"]["1"]
    assert s["trained"] > 0.9 and abs(s["gap"]["vs_random_init"]) < 0.05


def test_reach_mlp_is_deterministic(batch, details):
    trained, random_init = planted_radial(batch)
    again = reach.run_reach(batch, trained, random_init, ProbesSpec(), SPEC)
    assert json.dumps(again, sort_keys=True) == json.dumps(details, sort_keys=True)
