"""mazesearch.model.gpt: config, the GPT's math against a naive reference, init, checkpoints.

The GPT-vs-TransformerLens equivalence lives in tests/test_bridge.py; this file never imports
transformer_lens.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import REL_TOL, VOCAB, rel_err, tiny
from mazesearch.io import InputError
from mazesearch.data.dataset import build_mazes
from mazesearch.model.gpt import (
    CONFIG_FILE, GPT, WEIGHTS_FILE, ModelConfig, apply_rotary, causal_attention, load_gpt, rotary_tables,
    save_checkpoint,
)
from mazesearch.data.tokens import TokenizerOptions, encode

pytestmark = pytest.mark.usefixtures("single_thread_torch")  # tests/conftest.py


@pytest.fixture(scope="module")
def maze_tokens() -> torch.Tensor:
    """Real encoded 6x6 mazes, right-padded: long [8, ~160]."""
    mazes, _ = build_mazes(generator="dfs", grid_n=6, n_mazes=8, seed=11)
    tb = encode(mazes, VOCAB, TokenizerOptions())
    return torch.from_numpy(tb.padded(VOCAB.pad_id).astype(np.int64))


ALL_VARIANTS = [
    dict(positional=p, normalization=n, act_fn=a)
    for p, n, a in [("learned", "LN", "gelu"), ("rotary", "LN", "gelu_new"),
                    ("learned", "none", "relu"), ("rotary", "none", "silu")]
]


# ---------------------------------------------------------------------------- config


def test_config_json_round_trip():
    cfg = tiny(positional="rotary", normalization="none", act_fn="silu")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    from_numpy = tiny(n_ctx=np.int64(200), d_vocab=np.int32(len(VOCAB)))
    assert type(from_numpy.n_ctx) is int and from_numpy == tiny()


@pytest.mark.parametrize("bad, match", [
    (dict(d_model=0), "d_model"),
    (dict(n_heads=2.0), "n_heads"),
    (dict(n_layers=True), "n_layers"),
    (dict(act_fn="tanh"), "act_fn"),
    (dict(normalization="RMS"), "normalization"),
    (dict(positional="alibi"), "positional"),
    (dict(positional="rotary", d_head=7), "even d_head"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny(**bad)


def test_config_from_dict_names_unknown_and_missing_keys():
    d = tiny().to_dict()
    with pytest.raises(ValueError, match="unknown model config keys: \\['dropout'\\]"):
        ModelConfig.from_dict({**d, "dropout": 0.1})
    del d["d_vocab"]
    with pytest.raises(ValueError, match="missing keys: \\['d_vocab'\\]"):
        ModelConfig.from_dict(d)


# ---------------------------------------------------------------------------- init


def test_init_is_a_function_of_the_seed_only():
    state_before = torch.random.get_rng_state()
    a = GPT(tiny(), seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state_before), "init touched the global RNG"
    torch.rand(1000)  # advance the global RNG: must not matter
    b = GPT(tiny(), seed=5).state_dict()
    c = GPT(tiny(), seed=6).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed.weight"], c["embed.weight"])


def test_init_scales():
    cfg = tiny(d_model=256, n_heads=4, d_head=64, n_layers=8, d_mlp=512)
    sd = GPT(cfg, seed=0).state_dict()
    std = 0.8 / math.sqrt(cfg.d_model)
    assert sd["embed.weight"].std().item() == pytest.approx(std, rel=0.05)
    assert sd["blocks.3.mlp.in.weight"].std().item() == pytest.approx(std, rel=0.05)
    assert sd["blocks.3.attn.o.weight"].std().item() == pytest.approx(std / 4, rel=0.05)  # 1/sqrt(2*8)
    assert sd["blocks.3.attn.q.bias"].abs().max() == 0
    assert torch.equal(sd["blocks.3.ln1.weight"], torch.ones(cfg.d_model))
    assert "unembed.bias" not in sd


# ---------------------------------------------------------------------------- math


def naive_forward(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The model written out op by op: explicit scores, mask, softmax, per-pair rotation loops."""
    cfg, sd = model.cfg, model.state_dict()
    batch, pos = tokens.shape

    def norm(x, name):
        if cfg.normalization == "none":
            return x
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * sd[f"{name}.weight"] + sd[f"{name}.bias"]

    def rotate(x):  # [batch, head, pos, d_head]; pair (2i, 2i+1) turns by p / 10000**(2i/d_head)
        out = x.clone()
        for i in range(cfg.d_head // 2):
            theta = torch.arange(pos, dtype=torch.float64) / 10000 ** (2 * i / cfg.d_head)
            c, s = torch.cos(theta).float(), torch.sin(theta).float()
            a, b = x[..., 2 * i], x[..., 2 * i + 1]
            out[..., 2 * i], out[..., 2 * i + 1] = a * c - b * s, a * s + b * c
        return out

    act = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu,
           "gelu_new": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))}[cfg.act_fn]
    resid = sd["embed.weight"][tokens]
    if cfg.positional == "learned":
        resid = resid + sd["pos_embed.weight"][:pos]
    causal = torch.ones(pos, pos, dtype=torch.bool).tril()
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        x = norm(resid, p + "ln1")
        q, k, v = (
            (x @ sd[f"{p}attn.{n}.weight"].T + sd[f"{p}attn.{n}.bias"])
            .view(batch, pos, cfg.n_heads, cfg.d_head).transpose(1, 2)
            for n in "qkv"
        )
        if cfg.positional == "rotary":
            q, k = rotate(q), rotate(k)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(cfg.d_head)
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = (pattern @ v).transpose(1, 2).reshape(batch, pos, -1)
        resid = resid + z @ sd[p + "attn.o.weight"].T + sd[p + "attn.o.bias"]
        x = norm(resid, p + "ln2")
        hidden = act(x @ sd[p + "mlp.in.weight"].T + sd[p + "mlp.in.bias"])
        resid = resid + hidden @ sd[p + "mlp.out.weight"].T + sd[p + "mlp.out.bias"]
    return norm(resid, "ln_final") @ sd["unembed.weight"].T


def sharpen(model: GPT, factor: float = 3.0) -> GPT:
    """Scale q/k weights so attention is far from uniform: position/rotary bugs can't hide."""
    with torch.no_grad():
        for block in model.blocks:
            block.attn.q.weight.mul_(factor)
            block.attn.k.weight.mul_(factor)
    return model


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=lambda v: "-".join(v.values()))
def test_forward_matches_naive_reference(variant, maze_tokens):
    model = sharpen(GPT(tiny(**variant), seed=1)).eval()
    with torch.no_grad():
        ours = model(maze_tokens)
        ref = naive_forward(model, maze_tokens)
    assert ours.shape == (*maze_tokens.shape, len(VOCAB))
    assert rel_err(ours, ref) <= REL_TOL


def test_naive_reference_is_sensitive(maze_tokens):
    """The tolerance above means something: a 1% change of one q weight is far outside it."""
    model = sharpen(GPT(tiny(positional="rotary"), seed=1)).eval()
    with torch.no_grad():
        before = model(maze_tokens)
        model.blocks[0].attn.q.weight[0, 0] *= 1.01
        assert rel_err(model(maze_tokens), before) > 20 * REL_TOL


def test_rotary_tables_and_rotation():
    cos, sin = rotary_tables(50, 8)
    assert cos.shape == sin.shape == (50, 8)
    assert torch.equal(cos[:, 0], cos[:, 1]) and torch.equal(sin[:, 6], sin[:, 7])  # adjacent pairs share an angle
    assert torch.equal(cos[0], torch.ones(8)) and torch.equal(sin[0], torch.zeros(8))
    assert sin[1, 0].item() == pytest.approx(math.sin(1.0)) and sin[1, 2].item() == pytest.approx(math.sin(0.1))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 50, 8, generator=g), torch.randn(1, 1, 50, 8, generator=g)
    rq, rk = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    # hand-computed pair 0 at position 1: angle 1 rad
    a, b = q[0, 0, 1, 0], q[0, 0, 1, 1]
    assert rq[0, 0, 1, 0].item() == pytest.approx((a * math.cos(1) - b * math.sin(1)).item(), abs=1e-6)
    assert rq[0, 0, 1, 1].item() == pytest.approx((a * math.sin(1) + b * math.cos(1)).item(), abs=1e-6)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # a rotation
    # relative positions: <R(p) q0, R(p') k0> depends only on p - p'
    same = torch.stack([q[0, 0, 3]] * 50)[None, None]
    other = torch.stack([k[0, 0, 9]] * 50)[None, None]
    rq, rk = apply_rotary(same, cos, sin)[0, 0], apply_rotary(other, cos, sin)[0, 0]
    assert (rq[20] @ rk[15]).item() == pytest.approx((rq[40] @ rk[35]).item(), rel=REL_TOL)


@pytest.mark.parametrize("variant", ALL_VARIANTS[:2], ids=lambda v: v["positional"])
def test_causal(variant, maze_tokens):
    model = sharpen(GPT(tiny(**variant), seed=2)).eval()
    changed = maze_tokens.clone()
    t = 60
    changed[:, t:] = (changed[:, t:] + 7) % len(VOCAB)
    with torch.no_grad():
        a, b = model(maze_tokens), model(changed)
    assert torch.equal(a[:, :t], b[:, :t])
    assert (a[:, t:] - b[:, t:]).abs().max() > 1e-2


def test_forward_rejects_bad_input(maze_tokens):
    model = GPT(tiny(n_ctx=100))
    with pytest.raises(ValueError, match="exceeds n_ctx=100"):
        model(maze_tokens)
    with pytest.raises(ValueError, match="batch, pos"):
        model(maze_tokens[0])


def test_backward_reaches_every_parameter(maze_tokens):
    for variant in ALL_VARIANTS[:2]:
        model = GPT(tiny(**variant), seed=3)
        logits = model(maze_tokens[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), maze_tokens[:, 1:].reshape(-1)).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cpu_bf16_autocast_keeps_attention_in_float32(maze_tokens):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 30, 8, generator=g) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = causal_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert z.dtype == torch.float32
    assert torch.equal(z, F.scaled_dot_product_attention(q.bfloat16().float(), k.bfloat16().float(),
                                                         v.bfloat16().float(), is_causal=True))
    model = GPT(tiny(positional="rotary"), seed=5)
    with torch.no_grad():
        full = model(maze_tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(maze_tokens)
    assert mixed.dtype == torch.bfloat16
    assert (mixed.float() - full).abs().max().item() < 0.1  # bf16 rounding only (|logits| ~ 3)


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_bit_exact(tmp_path, maze_tokens):
    model = sharpen(GPT(tiny(positional="rotary", act_fn="gelu_new"), seed=4))
    save_checkpoint(model, tmp_path / "a")
    save_checkpoint(model, tmp_path / "b")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE])
    loaded = load_gpt(tmp_path / "a")
    assert loaded.cfg == model.cfg
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with torch.no_grad():
        assert torch.equal(model.eval()(maze_tokens), loaded.eval()(maze_tokens))


def test_load_gpt_errors(tmp_path):
    with pytest.raises(ValueError, match="model_config.json is missing"):
        load_gpt(tmp_path)
    save_checkpoint(GPT(tiny()), tmp_path)
    cfg_path = tmp_path / CONFIG_FILE
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "n_layers": 3}))
    with pytest.raises(ValueError, match="does not fit its config"):
        load_gpt(tmp_path)
    cfg_path.write_text(json.dumps({**cfg, "d_model": 48, "d_head": 12}))
    with pytest.raises(ValueError, match="has shape"):
        load_gpt(tmp_path)
    cfg_path.write_text("{not json")
    with pytest.raises(InputError, match="model_config.json: model config is not valid JSON"):
        load_gpt(tmp_path)
    cfg_path.write_text(json.dumps({**cfg, "d_model": "big"}))
    with pytest.raises(InputError, match="model_config.json: is not a valid model config .*d_model"):
        load_gpt(tmp_path)
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"model_config.json: the model has d_vocab=\d+ but the vocabulary v.json has 5 tokens"):
        load_gpt(tmp_path, vocab=[0] * 5, vocab_path="v.json")
    assert load_gpt(tmp_path, vocab=VOCAB).cfg.d_vocab == len(VOCAB)
    weights = tmp_path / WEIGHTS_FILE
    good = weights.read_bytes()
    for data in (np.random.default_rng(0).bytes(4096), good[: len(good) // 2], b""):
        weights.write_bytes(data)
        with pytest.raises(InputError, match="model.safetensors: is not a readable safetensors file"):
            load_gpt(tmp_path)
    from safetensors.torch import load_file, save_file

    weights.write_bytes(good)
    state = load_file(weights)
    save_file({**state, "embed.weight": state["embed.weight"].half()}, weights)
    with pytest.raises(InputError, match=r"embed.weight has shape .* torch.float16, config"):
        load_gpt(tmp_path)
    weights.unlink()
    with pytest.raises(InputError, match="model.safetensors: .* is not a model checkpoint: model.safetensors is missing"):
        load_gpt(tmp_path)


def test_model_module_does_not_import_transformer_lens():
    import subprocess

    code = "import sys, mazesearch.model.gpt; assert 'transformer_lens' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_replace_keeps_config_frozen():
    cfg = tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 64  # type: ignore[misc]
    assert dataclasses.replace(cfg, n_ctx=300).n_ctx == 300
