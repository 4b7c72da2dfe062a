"""Path patching (mazesearch.interp.path_patching): a planted circuit A (layer 0) -> B (layer 1) ->
logits is found and a path into a bystander head is not; a broken variant (the sender's write read
by every head) fails the same check; and the numbers agree with plain TransformerLens activation
patching where the receiver is the only reader, and with a hand-written freeze-everything-else
implementation on a LayerNorm model."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from helpers import one_torch_thread
from mazesearch.interp import path_patching as pp
from mazesearch.interp.patching import PairBatch, logit_diff_fn, normalised

V, T, P, EDIT_AT = 12, 9, 16, 3  # vocab, tokens, pairs, the edited position


def bridge_of(cfg_kw: dict, seed: int = 0, edit=None):
    from mazesearch.interp.bridge import to_bridge
    from mazesearch.model.gpt import GPT, ModelConfig

    cfg = ModelConfig(d_vocab=V, n_ctx=32, **cfg_kw)
    gpt = GPT(cfg, seed=seed).eval()
    if edit is not None:
        with torch.no_grad():
            sd = gpt.state_dict()
            edit(sd, cfg)
            gpt.load_state_dict(sd)
    with torch.no_grad():
        return to_bridge(gpt)


def pairs_for(bridge, seed: int = 0) -> PairBatch:
    """Random sequences differing at EDIT_AT; ld read at the last token for the two tokens whose
    logit difference moves most between the runs (so the clean-corrupt gap is large)."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, V, (P, T), generator=g)
    corrupt = clean.clone()
    corrupt[:, EDIT_AT] = (clean[:, EDIT_AT] + torch.randint(1, V, (P,), generator=g)) % V
    with torch.no_grad():
        move = bridge(clean)[:, -1] - bridge(corrupt)[:, -1]  # [P, V]
    edit = torch.zeros(P, T, dtype=torch.bool)
    edit[:, EDIT_AT] = True
    return PairBatch(clean=clean, corrupt=corrupt, decision_pos=torch.full((P,), T - 1),
                     clean_token=move.argmax(-1), corrupt_token=move.argmin(-1), masks={"edit": edit})


def _plant(sd, cfg):
    """d_model 16 = E (0:4, token identity) | S (4:8, A's write) | R (8:12, B's write) | X (12:16).
    Attention is uniform (q = k = 0), MLPs write nothing, the unembedding reads R alone:
    A = L0H1 reads E -> S; L0H0 reads E -> X; B = L1H0 reads S -> R; C = L1H1 reads S -> X.
    Nothing reads X: information flows only through A -> B."""
    g = torch.Generator().manual_seed(7)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    for key in sd:
        sd[key].zero_()
    sd["embed.weight"][:, 0:4] = rnd(V, 4)
    d = cfg.d_head  # 4; head h owns rows / columns h*d:(h+1)*d
    sd["blocks.0.attn.v.weight"][d:2 * d, 0:4] = rnd(d, 4)  # A reads E
    sd["blocks.0.attn.o.weight"][4:8, d:2 * d] = rnd(4, d)  # ... and writes S
    sd["blocks.0.attn.v.weight"][0:d, 0:4] = rnd(d, 4)  # L0H0 reads E
    sd["blocks.0.attn.o.weight"][12:16, 0:d] = rnd(4, d)  # ... and writes X
    sd["blocks.1.attn.v.weight"][0:d, 4:8] = rnd(d, 4)  # B reads S
    sd["blocks.1.attn.o.weight"][8:12, 0:d] = rnd(4, d)  # ... and writes R
    sd["blocks.1.attn.v.weight"][d:2 * d, 4:8] = rnd(d, 4)  # C reads S
    sd["blocks.1.attn.o.weight"][12:16, d:2 * d] = rnd(4, d)  # ... and writes X
    sd["unembed.weight"][:, 8:12] = rnd(V, 4)


PLAIN = dict(d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=8, normalization="none", positional="none")


@pytest.fixture(scope="module")
def planted():
    with one_torch_thread():
        bridge = bridge_of(PLAIN, edit=_plant)
        batch = pairs_for(bridge)
        yield bridge, batch, pp.PathPatcher(bridge, batch)


class _Everywhere(pp.PathPatcher):
    """Broken on purpose: the sender's write goes into the residual stream every head reads."""

    @torch.no_grad()
    def patched_ld(self, path, inputs=pp.INPUTS):
        layer = min(r[0] for r in path.receivers)
        d = self.delta(path.sender, layer)
        out = self.bridge.run_with_hooks(self.batch.corrupt, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre",
                                                                         lambda x, hook: x + d)])
        return self.metric(out).double().numpy()


def _planted_circuit_found(patcher) -> bool:
    a_b = patcher.fraction(patcher.patched_ld(pp.Path.parse("L0H1", "L1H0")))
    a_c = patcher.fraction(patcher.patched_ld(pp.Path.parse("L0H1", "L1H1")))
    dead = patcher.fraction(patcher.patched_ld(pp.Path.parse("L0H0", "L1H0")))  # L0H0 writes X: unread
    return abs(a_b - 1) < 1e-4 and abs(a_c) < 1e-4 and abs(dead) < 1e-4


def test_planted_circuit(planted):
    from transformer_lens import patching as tl

    bridge, batch, patcher = planted
    assert patcher.ld_clean.mean() - patcher.ld_corrupt.mean() > 1.0
    with one_torch_thread():
        assert _planted_circuit_found(patcher)
        # through v alone (attention is uniform: q and k carry nothing)
        path = pp.Path.parse("L0H1", "L1H0")
        assert abs(patcher.fraction(patcher.patched_ld(path, ("v",))) - 1) < 1e-4
        assert abs(patcher.fraction(patcher.patched_ld(path, ("q", "k")))) < 1e-4
        # the edited position read by A alone restores everything too
        assert abs(patcher.fraction(patcher.patched_ld(pp.Path.parse("edit", "L0H1"))) - 1) < 1e-4
        assert abs(patcher.fraction(patcher.patched_ld(pp.Path.parse("edit", "L0H0")))) < 1e-4
        # activation patching A (TL, every position) restores it as well
        _, clean_cache = bridge.run_with_cache(batch.clean)
        metric = logit_diff_fn(batch)
        with contextlib.redirect_stderr(io.StringIO()):  # TL's progress bar
            heads = tl.get_act_patch_attn_head_out_all_pos(bridge, batch.corrupt, clean_cache, metric, reduce="none")
        per_head = normalised(heads.values.double().numpy(), patcher.ld_clean, patcher.ld_corrupt)  # [layers, heads]
        assert abs(per_head[0, 1] - 1) < 1e-4 and abs(per_head[1, 0] - 1) < 1e-4
        assert abs(per_head[0, 0]) < 1e-4 and abs(per_head[1, 1]) < 1e-4


def test_a_sender_written_into_every_reader_fails_the_planted_check(planted):
    bridge, batch, _ = planted
    with one_torch_thread():
        broken = _Everywhere(bridge, batch)
        assert not _planted_circuit_found(broken)
        assert broken.fraction(broken.patched_ld(pp.Path.parse("L0H1", "L1H1"))) > 0.99  # C "restores" it all


def _only_reader(sd, cfg):
    """Random weights, but the sender L0H0 writes into dims 0:4 and only the receiver L1H0 reads them."""
    d = cfg.d_head
    for key in sd:
        sd[key] *= 6.0  # GPT-2's init (std 0.02) moves almost nothing without LayerNorm
    sd["blocks.0.attn.o.weight"][4:, 0:d] = 0.0  # L0H0 writes dims 0:4 only
    for layer in (0, 1):
        sd[f"blocks.{layer}.mlp.in.weight"][:, 0:4] = 0.0
    for x in "qkv":
        sd[f"blocks.1.attn.{x}.weight"][d:, 0:4] = 0.0  # L1H1 does not read them
    sd["unembed.weight"][:, 0:4] = 0.0


def test_agrees_with_activation_patching_where_the_receiver_is_the_only_reader():
    """Rotary attention, random q/k/v: the path L0H0 -> L1H0 is the sender's only route to the logits,
    so TL's activation patching of the sender's output must give the same ld, pair by pair."""
    from transformer_lens import patching as tl

    cfg = dict(PLAIN, d_model=32, d_head=8, d_mlp=16, positional="rotary")
    with one_torch_thread():
        bridge = bridge_of(cfg, seed=4, edit=_only_reader)
        batch = pairs_for(bridge, seed=1)
        patcher = pp.PathPatcher(bridge, batch)
        ours = patcher.patched_ld(pp.Path.parse("L0H0", "L1H0"))  # [P]
        _, clean_cache = bridge.run_with_cache(batch.clean)
        with contextlib.redirect_stderr(io.StringIO()):  # TL's progress bar
            theirs = tl.get_act_patch_attn_head_out_all_pos(bridge, batch.corrupt, clean_cache, logit_diff_fn(batch),
                                                            reduce="none").values[0, 0].double().numpy()
    assert np.abs(ours - patcher.ld_corrupt).max() > 0.1  # the path matters
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def _frozen_reference(bridge, batch, sender, receiver):
    """Path patching as Wang et al. write it, independently of the module: pass 1 runs the corrupt
    prompt with the sender's hook_z clean and every other head's z and every MLP output frozen at
    the corrupt run's, recording the receiver's q/k/v; pass 2 puts those into the corrupt run."""
    n = bridge.cfg.n_layers
    names = [f"blocks.{l}.{h}" for l in range(n) for h in ("attn.hook_z", "hook_mlp_out")]
    _, clean = bridge.run_with_cache(batch.clean, names_filter=names)
    _, corrupt = bridge.run_with_cache(batch.corrupt, names_filter=names)
    (sl, sh), (rl, rh) = sender, receiver
    got = {}

    def freezer(name):  # (hook.name is the bridge's alias target, not the name hooked)
        def freeze(x, hook):
            x = corrupt[name].clone()
            if name == f"blocks.{sl}.attn.hook_z":
                x[:, :, sh] = clean[name][:, :, sh]
            return x
        return freeze

    def keeper(c):
        def keep(x, hook):
            got[c] = x[:, :, rh].clone()
        return keep

    bridge.run_with_hooks(batch.corrupt, fwd_hooks=[(n_, freezer(n_)) for n_ in names if int(n_.split(".")[1]) < rl]
                          + [(f"blocks.{rl}.attn.hook_{c}", keeper(c)) for c in "qkv"])

    def putter(c):
        def put(x, hook):
            x = x.clone()
            x[:, :, rh] = got[c]
            return x
        return put

    out = bridge.run_with_hooks(batch.corrupt, fwd_hooks=[(f"blocks.{rl}.attn.hook_{c}", putter(c)) for c in "qkv"])
    return logit_diff_fn(batch)(out).double().numpy()


def test_agrees_with_a_freeze_everything_else_reference_on_a_layernorm_model():
    cfg = dict(d_model=32, n_layers=3, n_heads=2, d_head=8, d_mlp=32, normalization="LN", positional="rotary")
    with one_torch_thread(), torch.no_grad():
        bridge = bridge_of(cfg, seed=2)
        batch = pairs_for(bridge, seed=3)
        patcher = pp.PathPatcher(bridge, batch)
        for sender, receiver in (((0, 1), (2, 0)), ((1, 0), (2, 1)), ((0, 0), (1, 1))):
            ours = patcher.patched_ld(pp.Path(sender, (receiver,)))
            ref = _frozen_reference(bridge, batch, sender, receiver)
            assert np.abs(ref - patcher.ld_corrupt).max() > 1e-3  # the path moves something
            assert np.allclose(ours, ref, atol=1e-4), (sender, receiver)


def test_random_paths_are_seeded_shaped_and_never_the_path():
    path = pp.Path.parse("L0H1", ["L2H1"])
    a = pp.random_paths(path, 4, 4, 50, np.random.default_rng([0, 1]))
    assert a == pp.random_paths(path, 4, 4, 50, np.random.default_rng([0, 1])) and len(a) == 50
    assert path not in a and all(p.sender[0] < min(r[0] for r in p.receivers) for p in a)
    b = pp.random_paths(pp.Path.parse("edit", ["L3H0", "L3H2"]), 4, 4, 50, np.random.default_rng(0))
    assert all(p.sender == pp.EDIT and len(set(p.receivers)) == 2 for p in b)
    assert pp.random_paths(pp.Path.parse("L0H0", ["L1H0"]), 2, 1, 5, np.random.default_rng(0)) == []  # none other


def test_path_checks():
    assert pp.Path.parse("edit", "L1H0") == pp.Path(pp.EDIT, ((1, 0),))
    with pytest.raises(ValueError, match="not in a model of 2 layers"):
        pp.Path.parse("L0H1", ["L3H0"]).check(2, 2)
    with pytest.raises(ValueError, match="below every receiver"):
        pp.Path.parse("L1H0", ["L1H1"]).check(2, 2)
    with pytest.raises(ValueError, match="is not a head"):
        pp.parse_head("L1")
