"""Direct logit attribution (DLA) at fork decisions (docs/interp.md).

At every fork move (mazesearch.interp.forks) the model's logit difference
``logit(correct next cell) - logit(best wrong legal neighbour)`` (the wrong cell the model's own
final logits rank highest) is split over the components that write into the residual stream:

    embed, [pos_embed], L{l}H{h} (each head: hook_z @ W_O[h]), L{l}.attn_bias (b_O),
    L{l}.mlp (hook_mlp_out), ln_final.bias (the final LayerNorm's bias and b_U: a constant)

By hand, with the final LayerNorm's scale *frozen* from the real forward
(``ln_final.hook_scale``): the final residual stream is the sum of the components, LayerNorm with
a fixed scale is affine (centre, divide, times w, plus b) and the unembedding is linear, so the
contributions plus the bias term sum to the model's own logit difference exactly (float error;
:func:`sum_error`). Activations come from TransformerLens' ``run_with_cache`` on the bridge.

A head's contribution includes its share of the value bias (``b_V`` reaches the output through
the attention pattern, which sums to 1). TransformerLens' ``enable_compatibility_mode`` +
``stack_head_results`` moves that constant into the attention bias instead; tests/test_lens.py
checks both conventions against each other.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mazesearch.data.tokens import TokenBatch
from mazesearch.interp.forks import Moves, batches
from mazesearch.interp.lens import rounded

SUM_TOLERANCE = 1e-4  # components + bias vs the model's logit difference, relative to its largest value


@dataclasses.dataclass(frozen=True)
class Attribution:
    names: list[str]  # [C] components, model order
    values: np.ndarray  # float64 [C, F]: each component's share of the logit difference at fork F
    total: np.ndarray  # float64 [F]: the model's own logit(correct) - logit(wrong)
    rows: np.ndarray  # int64 [F]: the move rows (forks with a wrong legal neighbour)
    correct_token: np.ndarray  # int64 [F]
    wrong_token: np.ndarray  # int64 [F]


def hook_names(cfg) -> list[str]:
    names = ["hook_embed"] + (["hook_pos_embed"] if cfg.positional_embedding_type == "standard" else [])
    for layer in range(cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]
    return names + (["ln_final.hook_scale"] if cfg.normalization_type == "LN" else [])


def components(bridge, cache, bi: torch.Tensor, pi: torch.Tensor, learned_positions: bool) -> dict[str, torch.Tensor]:
    """What each component writes into the final residual stream at the rows: ``{name: [rows, d_model]}``."""
    parts = {"embed": cache["hook_embed"][bi, pi]}
    if learned_positions:
        parts["pos_embed"] = cache["hook_pos_embed"][bi, pi]
    for layer in range(bridge.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][bi, pi]  # [rows, n_heads, d_head]
        heads = torch.einsum("rhd,hdm->rhm", z, bridge.W_O[layer])  # [rows, n_heads, d_model]
        for h in range(heads.shape[1]):
            parts[f"L{layer}H{h}"] = heads[:, h]
        parts[f"L{layer}.attn_bias"] = bridge.b_O[layer].expand(len(bi), -1)
        parts[f"L{layer}.mlp"] = cache[f"blocks.{layer}.hook_mlp_out"][bi, pi]
    return parts


def attribute(parts: dict[str, torch.Tensor], scale: torch.Tensor | None, ln_w: torch.Tensor | None,
              ln_b: torch.Tensor | None, W_U: torch.Tensor, b_U: torch.Tensor, correct: torch.Tensor,
              wrong: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """Each part's share of ``logit[correct] - logit[wrong]``, float64 ``[C, rows]``, plus the constant.

    parts ``{name: [rows, d_model]}``; scale ``[rows, 1]`` (the final LayerNorm's, frozen; None:
    no final LayerNorm, then ln_w/ln_b are ignored); W_U ``[d_model, d_vocab]``; b_U ``[d_vocab]``;
    correct, wrong: long ``[rows]``. The last entry is ``ln_final.bias`` (``unembed.bias``
    without LayerNorm): ``ln_b . (W_U[:, c] - W_U[:, w]) + b_U[c] - b_U[w]``.
    """
    W_U, b_U = W_U.double(), b_U.double()
    direction = (W_U[:, correct] - W_U[:, wrong]).T  # [rows, d_model]
    constant = b_U[correct] - b_U[wrong]  # [rows]
    if scale is not None:
        constant = constant + direction @ ln_b.double()
        direction = direction * ln_w.double()
    names, values = [], []
    for name, x in parts.items():
        x = x.double()
        if scale is not None:  # the frozen LayerNorm: centre, divide by the real forward's scale
            x = (x - x.mean(-1, keepdim=True)) / scale.double()
        names.append(name)
        values.append((x * direction).sum(-1))
    names.append("ln_final.bias" if scale is not None else "unembed.bias")
    values.append(constant)
    return names, torch.stack(values)


def _best(logits: torch.Tensor, allowed: np.ndarray, cell_token: np.ndarray) -> torch.Tensor:
    """Token of the allowed cell with the highest logit, per row: logits [rows, d_vocab],
    allowed bool [rows, n_cells] -> long [rows]."""
    cell_logits = logits[:, torch.from_numpy(cell_token).to(logits.device)]  # [rows, n_cells]
    mask = torch.from_numpy(allowed).to(logits.device)
    cell = torch.where(mask, cell_logits, torch.full_like(cell_logits, -torch.inf)).argmax(-1)
    return torch.from_numpy(cell_token).to(logits.device)[cell]


def fork_attribution(bridge, tokens: TokenBatch, moves: Moves, cell_token: np.ndarray, batch_size: int,
                     pad_id: int) -> Attribution:
    """DLA at every fork of ``moves`` that has a wrong legal neighbour (all forks on a tree)."""
    cfg = bridge.cfg
    rows_all = np.flatnonzero(moves.is_fork & moves.wrong.any(axis=1))
    forks = moves.take(rows_all)
    device = bridge.W_U.device
    C = len(component_names(cfg))
    values = np.zeros((C, len(forks)))
    total = np.zeros(len(forks))
    correct_tok = np.zeros(len(forks), dtype=np.int64)
    wrong_tok = np.zeros(len(forks), dtype=np.int64)
    names = component_names(cfg)
    for rows, ids, bi, pi in batches(tokens, forks, batch_size, pad_id, device):
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(ids, names_filter=hook_names(cfg))
            final = logits[bi, pi].double()  # [rows, d_vocab]
            c = _best(final, forks.correct[rows], cell_token)
            w = _best(final, forks.wrong[rows], cell_token)
            parts = components(bridge, cache, bi, pi, cfg.positional_embedding_type == "standard")
            scale = cache["ln_final.hook_scale"][bi, pi] if cfg.normalization_type == "LN" else None
            ln = getattr(bridge, "ln_final", None)
            got, vals = attribute(parts, scale, getattr(ln, "w", None), getattr(ln, "b", None),
                                  bridge.W_U, bridge.b_U, c, w)
        if got != names:
            raise RuntimeError(f"components {got} differ from the expected {names}")
        values[:, rows] = vals.cpu().numpy()
        total[rows] = (final.gather(1, c[:, None]) - final.gather(1, w[:, None]))[:, 0].cpu().numpy()
        correct_tok[rows], wrong_tok[rows] = c.cpu().numpy(), w.cpu().numpy()
    return Attribution(names=names, values=values, total=total, rows=rows_all,
                       correct_token=correct_tok, wrong_token=wrong_tok)


def component_names(cfg) -> list[str]:
    """The component names of :func:`attribute`'s output for a bridge config, in model order."""
    names = ["embed"] + (["pos_embed"] if cfg.positional_embedding_type == "standard" else [])
    for layer in range(cfg.n_layers):
        names += [f"L{layer}H{h}" for h in range(cfg.n_heads)] + [f"L{layer}.attn_bias", f"L{layer}.mlp"]
    return names + ["ln_final.bias" if cfg.normalization_type == "LN" else "unembed.bias"]


def sum_error(values: np.ndarray, total: np.ndarray) -> float:
    """max |sum of components - total| / max |total|: 0 for an exact decomposition."""
    if not len(total):
        return 0.0
    return float(np.abs(values.sum(axis=0) - total).max() / max(np.abs(total).max(), 1e-12))


# ---------------------------------------------------------------------------- reports


def _stats(att: Attribution) -> dict:
    by = {name: att.values[i] for i, name in enumerate(att.names)}
    n_layers = sum(name.endswith(".mlp") for name in att.names)
    per_layer = {f"L{l}.attn": sum(v for k, v in by.items() if k.startswith(f"L{l}H") or k == f"L{l}.attn_bias")
                 for l in range(n_layers)}
    empty = not len(att.total)
    mean = lambda v: None if empty else float(np.mean(v))  # noqa: E731
    std = lambda v: None if empty else float(np.std(v))  # noqa: E731
    return {
        "total": {"mean": mean(att.total), "std": std(att.total),
                  "frac_prefers_correct": mean(att.total > 0)},
        "components": {name: {"mean": mean(v), "std": std(v)} for name, v in by.items()},
        "attn_layers": {name: mean(v) for name, v in per_layer.items()},
        "sum_error": sum_error(att.values, att.total),
    }


def report(trained: Attribution, control: Attribution) -> tuple[dict, dict, str, list[str]]:
    """(metrics headline, details, components.csv text, component names ranked by |trained mean|)."""
    if trained.names != control.names or not np.array_equal(trained.rows, control.rows):
        raise ValueError("trained and control attributions cover different components or forks")
    t, c = _stats(trained), _stats(control)
    means = np.array([t["components"][n]["mean"] or 0.0 for n in trained.names])
    ranked = [trained.names[i] for i in np.argsort(-np.abs(means), kind="stable")]
    total = t["total"]["mean"]
    metrics = {"total_logit_diff": total, "control_total_logit_diff": c["total"]["mean"]}
    for k, name in enumerate(ranked[:3], start=1):
        metrics[f"top{k}_component"] = name
        metrics[f"top{k}_mean"] = t["components"][name]["mean"]
    top = metrics.get("top1_mean")
    metrics["top1_frac_of_total"] = None if not total or top is None else top / total
    details = rounded({"n_forks": len(trained.total), "trained": t, "control": c, "ranked": ranked})
    metrics = rounded(metrics)
    lines = ["component,mean,std,control_mean"]
    cell = lambda v: "" if v is None else repr(v)  # noqa: E731
    for name in trained.names:
        tc, cc = details["trained"]["components"][name], details["control"]["components"][name]
        lines.append(f"{name},{cell(tc['mean'])},{cell(tc['std'])},{cell(cc['mean'])}")
    return metrics, details, "\n".join(lines) + "\n", ranked
