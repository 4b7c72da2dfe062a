"""TransformerLens 4.x view of a trained GPT: the analysis interface (hooks, run_with_cache).

``to_bridge(gpt)`` boots TL's native architecture with the matching config and loads the GPT's
weights unchanged (same keys, same shapes: see mazesearch.model.gpt). Activation names are TL's public
vocabulary: ``hook_embed``, ``hook_pos_embed``, ``blocks.{i}.hook_resid_post``, ...

This is the only module that imports transformer_lens (slow to import); the data and eval stages
never import it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources import boot_native

from mazesearch.model.gpt import GPT, LN_EPS, ROTARY_BASE, ModelConfig, load_gpt

# "none" is TL's standard (learned) embedding held at zero: the same function, exactly
_POSITIONAL = {"learned": "standard", "rotary": "rotary", "none": "standard"}
_NORMALIZATION = {"LN": "LN", "none": None}


def bridge_config(cfg: ModelConfig, seed: int = 0) -> TransformerBridgeConfig:
    """The TransformerBridgeConfig whose native model has exactly GPT(cfg)'s parameterization."""
    if cfg.positional not in _POSITIONAL or cfg.normalization not in _NORMALIZATION:
        raise ValueError(
            f"TransformerLens bridge has no equivalent for positional={cfg.positional!r}, "
            f"normalization={cfg.normalization!r}"
        )
    return TransformerBridgeConfig(
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        n_layers=cfg.n_layers,
        n_ctx=cfg.n_ctx,
        n_heads=cfg.n_heads,
        d_vocab=cfg.d_vocab,
        d_mlp=cfg.d_mlp,
        act_fn=cfg.act_fn,
        normalization_type=_NORMALIZATION[cfg.normalization],
        positional_embedding_type=_POSITIONAL[cfg.positional],
        rotary_dim=cfg.d_head if cfg.positional == "rotary" else None,
        rotary_base=ROTARY_BASE,
        eps=LN_EPS,
        attention_dir="causal",
        init_mode="gpt2",
        seed=seed,
        default_prepend_bos=False,  # maze sequences carry their own start token
        model_name="mazesearch-gpt",
    )


def to_bridge(model: GPT) -> TransformerBridge:
    """A TransformerBridge computing the same function as ``model``, in eval mode, same device."""
    device = next(model.parameters()).device
    bridge = boot_native(bridge_config(model.cfg), device=device)
    ours = model.state_dict()
    theirs = bridge.state_dict()
    if model.cfg.positional == "none":  # no positions: the bridge's position table is all zeros
        ours["pos_embed.weight"] = torch.zeros_like(theirs["pos_embed.weight"])
    # The native unembed has no bias; TL exposes a constant zero buffer as unembed.bias.
    extra = sorted(set(theirs) - set(ours) - {"unembed.bias"})
    unknown = sorted(set(ours) - set(theirs))
    if extra or unknown:
        raise ValueError(
            f"GPT and TransformerLens disagree on parameters: only in the bridge {extra}, only in GPT {unknown}"
        )
    for key, tensor in ours.items():
        if tensor.shape != theirs[key].shape:
            raise ValueError(f"{key}: GPT has shape {tuple(tensor.shape)}, the bridge {tuple(theirs[key].shape)}")
    if "unembed.bias" in theirs and theirs["unembed.bias"].abs().max() != 0:
        raise ValueError("TransformerLens bridge has a non-zero unembed bias; GPT has none")
    result = bridge.load_state_dict(ours, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"TransformerLens did not accept parameters {result.unexpected_keys}")
    bridge.eval()
    return bridge


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TransformerBridge:
    """Checkpoint directory (model.safetensors + model_config.json) -> bridge ready for run_with_cache."""
    return to_bridge(load_gpt(path, device=device))


def resid_post_names(n_layers: int) -> list[str]:
    """Hook names of the residual stream after each block, in layer order."""
    return [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
