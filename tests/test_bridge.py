"""mazesearch.interp.bridge: the trained GPT and its TransformerLens 4.x bridge are the same function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import REL_TOL, VOCAB, rel_err, tiny
from mazesearch.interp.bridge import bridge_config, load_model, resid_post_names, to_bridge
from mazesearch.data.dataset import build_mazes
import mazesearch.model.gpt as model_module
from mazesearch.model.gpt import GPT, ModelConfig, save_checkpoint
from mazesearch.data.tokens import TokenizerOptions, encode
from transformer_lens.model_bridge.sources import boot_native

TOL = REL_TOL  # relative to the magnitude compared (tests/helpers.py)

pytestmark = pytest.mark.usefixtures("single_thread_torch")  # tests/conftest.py


@pytest.fixture(scope="module")
def maze_tokens() -> torch.Tensor:
    """Real encoded mazes of two sizes (5x5 and 6x6), right-padded: long [12, ~160]."""
    parts = []
    for grid_n, n, seed in ((5, 6, 21), (6, 6, 22)):
        mazes, _ = build_mazes(generator="dfs", grid_n=grid_n, n_mazes=n, seed=seed)
        parts.append(encode(mazes, VOCAB, TokenizerOptions(seed=seed)))
    longest = max(int(tb.lengths.max()) for tb in parts)
    padded = np.concatenate([tb.padded(VOCAB.pad_id, length=longest) for tb in parts])
    return torch.from_numpy(padded.astype(np.int64))


def trained(cfg: ModelConfig, tokens: torch.Tensor, steps: int = 8, seed: int = 0) -> GPT:
    """A GPT moved away from its init by a few AdamW steps on maze batches, then with q/k scaled
    up so attention is sharp: positional or rotary mistakes cannot hide in near-uniform patterns."""
    model = GPT(cfg, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    for _ in range(steps):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.d_vocab), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.q.weight.mul_(3.0)
            block.attn.k.weight.mul_(3.0)
    return model.eval()


VARIANTS = [
    dict(positional=p, normalization=n, act_fn=a)
    for p, n, a in [("learned", "LN", "gelu"), ("rotary", "LN", "gelu"), ("learned", "none", "relu"),
                    ("rotary", "none", "gelu_new"), ("rotary", "LN", "silu"), ("none", "LN", "gelu")]
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v.values()))
def test_bridge_logits_equal_gpt(variant, maze_tokens):
    model = trained(tiny(**variant), maze_tokens)
    bridge = to_bridge(model)
    assert not bridge.training
    with torch.no_grad():
        ours, theirs = model(maze_tokens), bridge(maze_tokens)
    assert theirs.shape == ours.shape == (*maze_tokens.shape, len(VOCAB))
    assert ours.std() > 0.5  # not a near-constant function: the comparison is meaningful
    assert rel_err(ours, theirs) <= TOL


def test_tolerance_catches_a_wrong_weight(maze_tokens):
    """A 5% mismatch in one key direction of one head is far outside the tolerance the tests use."""
    model = trained(tiny(positional="rotary"), maze_tokens)
    bridge = to_bridge(model)
    with torch.no_grad():
        model.blocks[1].attn.k.weight[3] *= 1.05
        assert rel_err(bridge(maze_tokens), model(maze_tokens)) > 10 * TOL


def test_tolerance_catches_the_other_rotary_convention(maze_tokens, monkeypatch):
    """GPT-NeoX "rotate half" RoPE instead of TL's adjacent pairs: the equality test would fail."""
    model = trained(tiny(positional="rotary"), maze_tokens)
    bridge = to_bridge(model)

    def rotate_half_rope(x, cos, sin):  # pairs (i, i + d/2) instead of (2i, 2i + 1)
        half = x.shape[-1] // 2
        c, s = cos[..., 0::2], sin[..., 0::2]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)

    monkeypatch.setattr(model_module, "apply_rotary", rotate_half_rope)
    with torch.no_grad():
        assert rel_err(bridge(maze_tokens), model(maze_tokens)) > 10 * TOL


def test_no_positions_is_permutation_blind_before_the_causal_mask(maze_tokens):
    """positional "none": the first token's logits ignore what comes after it, and a token's
    residual in block 0 depends on its id only (no position information enters)."""
    model = GPT(tiny(positional="none"), seed=0).eval()
    with torch.no_grad():
        resid, rotary = model.embed_tokens(maze_tokens)
    assert rotary is None
    same = maze_tokens[0, 0] == maze_tokens[:, 0]
    assert torch.equal(resid[0, 0].expand_as(resid[same, 0]), resid[same, 0])
    a = (maze_tokens == maze_tokens[0, 3]).nonzero()  # every occurrence of one token id
    assert len(a) > 1 and torch.equal(resid[a[0, 0], a[0, 1]], resid[a[-1, 0], a[-1, 1]])


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_init_is_transformer_lens_init(positional):
    """GPT(cfg, seed) draws exactly the weights boot_native draws for the same seed."""
    cfg = tiny(positional=positional, n_layers=3)
    ours = GPT(cfg, seed=17).state_dict()
    theirs = boot_native(bridge_config(cfg, seed=17)).state_dict()
    assert set(theirs) - set(ours) == {"unembed.bias"}
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_run_with_cache_resid_post(positional, maze_tokens):
    cfg = tiny(positional=positional, n_layers=3)
    model = trained(cfg, maze_tokens)
    bridge = to_bridge(model)
    names = resid_post_names(cfg.n_layers)
    wanted = names + ["hook_embed", "blocks.0.hook_resid_pre"] + (["hook_pos_embed"] if positional == "learned" else [])
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(maze_tokens, names_filter=lambda n: n in wanted)
        ours = list(model.residual_stream(maze_tokens))[1:]  # GPT's own stream after each block
    assert set(cache.keys()) == set(wanted)
    embed = cache["hook_embed"] + (cache["hook_pos_embed"] if positional == "learned" else 0)
    assert (embed - cache["blocks.0.hook_resid_pre"]).abs().max() == 0
    for name, mine in zip(names, ours):
        assert cache[name].shape == (*maze_tokens.shape, cfg.d_model)
        assert rel_err(cache[name], mine) <= TOL
    with torch.no_grad():  # the last resid_post, through ln_final and unembed, is the logits
        from_resid = bridge.unembed(bridge.ln_final(cache[names[-1]]))
    assert rel_err(from_resid, logits) <= TOL
    assert rel_err(logits, model(maze_tokens)) <= TOL


def test_bridge_hook_edits_change_the_output(maze_tokens):
    """The bridge is a live analysis interface: zeroing a layer's resid_post changes the logits."""
    model = trained(tiny(), maze_tokens)
    bridge = to_bridge(model)
    with torch.no_grad():
        clean = bridge(maze_tokens)
        patched = bridge.run_with_hooks(
            maze_tokens, fwd_hooks=[("blocks.0.hook_resid_post", lambda t, hook: torch.zeros_like(t))]
        )
    assert (clean - patched).abs().max() > 1e-2


def test_load_model_from_checkpoint(tmp_path, maze_tokens):
    model = trained(tiny(positional="rotary", act_fn="gelu_new"), maze_tokens)
    save_checkpoint(model, tmp_path / "models")
    bridge = load_model(tmp_path / "models")
    assert not bridge.training
    with torch.no_grad():
        assert rel_err(bridge(maze_tokens), model(maze_tokens)) <= TOL
    state = bridge.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # weights unchanged


def test_load_model_rejects_a_non_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="is not a model checkpoint"):
        load_model(tmp_path)
