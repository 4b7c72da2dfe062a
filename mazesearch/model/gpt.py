"""The GPT we train: a small, hook-free, pre-LN decoder-only transformer.

Its parameterization is exactly TransformerLens 4.x's native model (``TransformerBridge.boot_native``):
the same parameter names and shapes (``GPT.state_dict()`` keys *are* the bridge's TL keys:
``embed.weight``, ``blocks.0.attn.q.weight``, ...), the same math (LayerNorm eps 1e-5, attention
scores / sqrt(d_head), Llama-style adjacent-pair rotary with base 10000 over the whole head, no
unembed bias) and the same seeded init. So training uses this fast module (fused causal attention,
no hook points) and analysis loads the very same weights into the bridge (mazesearch.interp.bridge);
tests/test_bridge.py proves the two compute the same logits.

Besides ``forward``, GPT exposes the pieces other modules build on, so the model math lives here
only: ``embed_tokens`` (the residual stream entering block 0, at any positions),
``residual_stream`` (after every block, for the activation cache), ``forward_cached`` with
``new_kv_cache`` (incremental decoding, mazesearch.evaluation.rollout) and ``logits``.

This module does not import transformer_lens (it is slow to import and the data/eval stages
don't need it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from mazesearch.io import InputError, read_json, write_bytes_atomic

ACT_FNS = ("gelu", "relu", "gelu_new", "silu")
NORMALIZATIONS = ("LN", "none")
POSITIONALS = ("learned", "rotary", "none")
LN_EPS = 1e-5  # TransformerLens' default cfg.eps
ROTARY_BASE = 10000  # TransformerLens' default cfg.rotary_base


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_ctx: int  # longest sequence the model accepts (learned positions / rotary tables)
    d_vocab: int
    act_fn: str = "gelu"  # gelu = exact erf GELU; gelu_new = tanh approximation (GPT-2)
    normalization: str = "LN"  # "LN": pre-LayerNorm with weight+bias; "none": identity
    positional: str = "learned"  # "learned": absolute position embedding; "rotary": RoPE on q, k;
    # "none": no positional information at all (causal masking alone orders the tokens)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy ints -> int: to_dict stays JSON-able
        choices = {"act_fn": ACT_FNS, "normalization": NORMALIZATIONS, "positional": POSITIONALS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.positional == "rotary" and self.d_head % 2:
            raise ValueError(f"rotary positions need an even d_head, got d_head={self.d_head}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"model config is missing keys: {missing}")
        return cls(**d)


# ---------------------------------------------------------------------------- building blocks


def _activation(name: str):
    return {
        "gelu": F.gelu,
        "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
        "relu": F.relu,
        "silu": F.silu,
    }[name]


def _norm(cfg: ModelConfig) -> nn.Module:
    return nn.LayerNorm(cfg.d_model, eps=LN_EPS) if cfg.normalization == "LN" else nn.Identity()


def rotary_angles(positions: torch.Tensor, d_head: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[*positions.shape, d_head]`` for adjacent-pair RoPE: dims (2i, 2i+1) rotate
    together, by ``position / ROTARY_BASE**(2i / d_head)``.

    Computed exactly as TransformerLens' NativeRotary does (float32 outer product, then
    repeat_interleave), so each position's angles are bit-identical to the bridge's tables.
    """
    inv_freq = 1.0 / (ROTARY_BASE ** (torch.arange(0, d_head, 2, device=positions.device).float() / d_head))
    freqs = positions.float()[..., None] * inv_freq  # = torch.outer for 1-d positions
    return freqs.cos().repeat_interleave(2, dim=-1), freqs.sin().repeat_interleave(2, dim=-1)


def rotary_tables(n_pos: int, d_head: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin ``[n_pos, d_head]``: :func:`rotary_angles` at positions 0..n_pos-1."""
    return rotary_angles(torch.arange(n_pos, device=device), d_head)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each adjacent pair (x0, x1) of ``x [batch, head, pos, d_head]`` by its angle."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    rotated_half = torch.stack((-x1, x0), dim=-1).flatten(-2)  # (x0, x1) -> (-x1, x0)
    return x * cos + rotated_half * sin


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fused causal attention, scale 1/sqrt(d_head) (TL: scores / sqrt(d_head)); no pattern is
    materialized. q ``[batch, head, q_pos, d_head]`` are the last q_pos of the k/v positions
    ``[batch, head, k_pos, d_head]`` (q_pos < k_pos when earlier keys come from a KV cache).
    ``mask`` (bool, True = may attend, broadcast to ``[batch, head, q_pos, k_pos]``) replaces
    the causal mask, e.g. to hide left padding.

    Under CPU bf16 autocast it runs in float32: PyTorch's CPU flash-attention backward is several
    times slower in bf16 than in fp32, and attention is a small share of the FLOPs, so the linear
    layers keep the bf16 speed-up."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    if mask is None and 1 < n_q < n_k:  # SDPA's is_causal aligns queries with the *first* keys
        mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(n_k - n_q)
    is_causal = mask is None and n_q == n_k  # a single query (n_q == 1) sees every key
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                                  is_causal=is_causal)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


# One layer's key/value cache: keys, values [batch, head, width, d_head]; column j holds the
# token at column j of the (possibly left-padded) sequences fed so far.
KVBuffers = tuple[torch.Tensor, torch.Tensor]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        inner = cfg.n_heads * cfg.d_head
        self.q = nn.Linear(cfg.d_model, inner)
        self.k = nn.Linear(cfg.d_model, inner)
        self.v = nn.Linear(cfg.d_model, inner)
        self.o = nn.Linear(inner, cfg.d_model)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None,
                kv: KVBuffers | None = None, start: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x ``[batch, pos, d_model]`` -> ``[batch, pos, d_model]``. With ``kv`` (this layer's
        key/value buffers) x sits at columns start..start+pos-1: its keys and values are written
        there and its queries attend to every column up to their own."""
        batch, pos, _ = x.shape
        q, k, v = (proj(x).view(batch, pos, self.n_heads, self.d_head).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        if rotary is not None:  # q, k, v: [batch, head, pos, d_head]
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if kv is not None:
            keys, values = kv
            keys[:, :, start : start + pos] = k
            values[:, :, start : start + pos] = v
            k, v = keys[:, :, : start + pos], values[:, :, : start + pos]
        z = causal_attention(q, k, v, mask)  # [batch, head, pos, d_head]
        return self.o(z.transpose(1, 2).reshape(batch, pos, self.n_heads * self.d_head))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # Named "in"/"out" to match the bridge's keys (blocks.{i}.mlp.in.weight); "in" is a
        # Python keyword, hence add_module/getattr.
        self.add_module("in", nn.Linear(cfg.d_model, cfg.d_mlp))
        self.out = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.act = _activation(cfg.act_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        return self.out(self.act(getattr(self, "in")(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = _norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = _norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, resid: torch.Tensor, rotary, kv: KVBuffers | None = None, start: int = 0,
                mask: torch.Tensor | None = None) -> torch.Tensor:  # [batch, pos, d_model]
        resid = resid + self.attn(self.ln1(resid), rotary, kv, start, mask)
        return resid + self.mlp(self.ln2(resid))


class GPT(nn.Module):
    """``GPT(cfg, seed)``: tokens ``[batch, pos]`` -> logits ``[batch, pos, d_vocab]``."""

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        # Build on the meta device: skips PyTorch's default init, which draws from the global
        # RNG; init_weights then materializes and fills every tensor from the seed alone.
        with torch.device("meta"):
            self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model) if cfg.positional == "learned" else None
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
            self.ln_final = _norm(cfg)
            self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)
        self.to_empty(device="cpu")
        self.init_weights(seed)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """TransformerLens' "gpt2" init, draw for draw (same seed -> same weights as boot_native).

        Weights ~ N(0, 0.8/sqrt(d_model)); the residual-writing projections (attn.o, mlp.out) are
        scaled down by 1/sqrt(2 n_layers); biases 0; LayerNorm weight 1. Draws happen in TL's
        order on CPU float32, then are copied to wherever the parameters live.
        """
        generator = torch.Generator().manual_seed(seed)
        std = 0.8 / math.sqrt(self.cfg.d_model)
        out_std = std / math.sqrt(2 * self.cfg.n_layers)

        def normal_(param: torch.Tensor, sd: float) -> None:
            draw = torch.empty(param.shape, dtype=torch.float32)
            param.copy_(draw.normal_(0.0, sd, generator=generator))

        normal_(self.embed.weight, std)
        if self.pos_embed is not None:
            normal_(self.pos_embed.weight, std)
        for block in self.blocks:
            for linear in (block.attn.q, block.attn.k, block.attn.v, block.attn.o):
                normal_(linear.weight, out_std if linear is block.attn.o else std)
                linear.bias.zero_()
            normal_(getattr(block.mlp, "in").weight, std)
            normal_(block.mlp.out.weight, out_std)
            getattr(block.mlp, "in").bias.zero_()
            block.mlp.out.bias.zero_()
        normal_(self.unembed.weight, std)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """tokens ``[batch, pos]`` -> logits ``[batch, pos, d_vocab]``; ``positions`` as in
        :meth:`embed_tokens` (default 0..pos-1; training with ``train.position_ids: random``
        passes ``[batch, pos]``)."""
        return self.logits(self.hidden(tokens, positions))

    def hidden(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream after the last block ``[batch, pos, d_model]`` (before ln_final)."""
        self._check_tokens(tokens)
        resid, rotary = self.embed_tokens(tokens, positions)
        for block in self.blocks:
            resid = block(resid, rotary)
        return resid

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds n_ctx={self.cfg.n_ctx}")

    def embed_tokens(self, tokens: torch.Tensor, positions: torch.Tensor | None = None):
        """tokens ``[batch, pos]`` -> (resid ``[batch, pos, d_model]`` entering block 0, rotary).

        ``positions`` (long ``[pos]``, or ``[batch, pos]`` per row, e.g. for left padding; default
        0..pos-1) place each token. ``rotary`` is the (cos, sin) pair the blocks rotate q and k
        by, broadcastable to ``[batch, head, pos, d_head]``; None with learned or no positions.
        """
        resid = self.embed(tokens)
        if self.pos_embed is not None:
            table = self.pos_embed.weight
            return resid + (table[: tokens.shape[1]] if positions is None else table[positions]), None
        if self.cfg.positional == "none":
            return resid, None
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
        cos, sin = rotary_angles(positions, self.cfg.d_head)  # [(batch,) pos, d_head]
        if positions.ndim == 2:
            cos, sin = cos[:, None], sin[:, None]  # per-row positions: broadcast over heads
        return resid, (cos.to(resid.dtype), sin.to(resid.dtype))

    def residual_stream(self, tokens: torch.Tensor, depth: int | None = None) -> Iterator[torch.Tensor]:
        """The residual stream entering block 0 (TL ``blocks.0.hook_resid_pre``), then after each
        of the first ``depth`` blocks (``blocks.{i}.hook_resid_post``; default all): ``depth + 1``
        tensors ``[batch, pos, d_model]``, yielded one at a time so each can be freed."""
        self._check_tokens(tokens)
        resid, rotary = self.embed_tokens(tokens)
        yield resid
        for block in self.blocks[:depth]:
            resid = block(resid, rotary)
            yield resid

    def logits(self, resid: torch.Tensor) -> torch.Tensor:
        """The last residual stream ``[..., d_model]`` -> logits ``[..., d_vocab]``."""
        return self.unembed(self.ln_final(resid))

    def new_kv_cache(self, batch: int, width: int) -> list[KVBuffers]:
        """Empty key/value buffers for :meth:`forward_cached`: one pair per block, each
        ``[batch, head, width, d_head]``, where the parameters live."""
        p = next(self.parameters())
        shape = (batch, self.cfg.n_heads, width, self.cfg.d_head)
        return [(torch.empty(shape, dtype=p.dtype, device=p.device),
                 torch.empty(shape, dtype=p.dtype, device=p.device)) for _ in self.blocks]

    def forward_cached(self, tokens: torch.Tensor, kv_cache: list[KVBuffers], start: int,
                       positions: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Incremental decoding: run tokens ``[batch, t]`` as columns start..start+t-1 of
        sequences whose earlier columns are in ``kv_cache`` (:meth:`new_kv_cache`); their keys
        and values are written there. ``positions`` default to the columns; ``mask`` (bool
        ``[batch, 1, t, start + t]``, True = may attend) replaces the causal mask, e.g. to hide
        left padding. Returns the last residual stream ``[batch, t, d_model]`` (:meth:`logits`).
        """
        if positions is None:
            positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        resid, rotary = self.embed_tokens(tokens, positions)
        for block, kv in zip(self.blocks, kv_cache):
            resid = block(resid, rotary, kv, start, mask)
        return resid

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------- checkpoints

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"


def save_checkpoint(model: GPT, directory: str | Path) -> None:
    """Write ``directory/model.safetensors`` (TL-named float tensors) + ``model_config.json``.

    Deterministic bytes: sorted keys, no timestamps or other metadata. Each file is written to a
    temporary name and renamed, so a killed run never leaves a half-written checkpoint file.
    """
    from safetensors.torch import save  # local: keeps `import mazesearch.model.gpt` light

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in sorted(model.state_dict().items())}
    config_text = json.dumps(model.cfg.to_dict(), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(directory / WEIGHTS_FILE, save(state))
    write_bytes_atomic(directory / CONFIG_FILE, config_text.encode())


def load_gpt(directory: str | Path, device: str | torch.device = "cpu", *, vocab=None,
             vocab_path: str | Path | None = None) -> GPT:
    """Load a checkpoint written by :func:`save_checkpoint` (bit-exact weights).

    Raises :class:`~mazesearch.io.InputError` naming the file when a file is missing, the config
    is not JSON or not a model config, the weights are not safetensors (random bytes, truncated)
    or do not fit the config (missing or unexpected tensors, wrong shapes or dtypes). With
    ``vocab`` (anything with a ``len``, e.g. a Vocab read from ``vocab_path``), the config's
    d_vocab must equal its size: a model reads only the vocabulary it was trained on.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    hint = "re-run `dvc repro train`"
    cfg_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise InputError(path, f"{directory} is not a model checkpoint: {path.name} is missing", hint)
    try:
        cfg = ModelConfig.from_dict(read_json(cfg_path, "model config", hint))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(cfg_path, f"is not a valid model config ({exc})", hint) from None
    if vocab is not None and len(vocab) != cfg.d_vocab:
        named = f" {vocab_path}" if vocab_path else ""
        raise InputError(cfg_path, f"the model has d_vocab={cfg.d_vocab} but the vocabulary{named} has "
                         f"{len(vocab)} tokens",
                         "the model was trained on another vocabulary: re-run `dvc repro train`")
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(weights_path, f"is not a readable safetensors file ({exc})", hint) from None
    model = GPT(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(weights_path, f"does not fit its config {CONFIG_FILE}: missing {missing[:4]}"
                         f"{'...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
                         f"{'...' if len(unexpected) > 4 else ''}", hint)
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape or tensor.dtype != expected[key].dtype:
            raise InputError(weights_path, f"{key} has shape {tuple(tensor.shape)} {tensor.dtype}, config "
                             f"{CONFIG_FILE} says {tuple(expected[key].shape)} {expected[key].dtype}", hint)
    model.load_state_dict(state)
    return model.to(device)


def with_context(model: GPT, n_ctx: int) -> GPT:
    """A rotary or position-free model has no position table: the same weights read any length."""
    if model.cfg.positional == "learned" or n_ctx <= model.cfg.n_ctx:
        return model
    device = next(model.parameters()).device
    longer = GPT(dataclasses.replace(model.cfg, n_ctx=n_ctx))
    longer.load_state_dict(model.state_dict())
    return longer.to(device)
