"""Activation patching on counterfactual pairs: where is the decision computed? (docs/interp.md)

Each pair (mazesearch.interp.counterfactuals) is a clean maze and a minimally edited twin whose
prompts have the same length and differ only in a few tokens (``target_move``: the target;
``wall_move``: one adjacency-list entry), and whose shortest paths share a prefix up to the
*decision* cell and then part. Both runs are teacher-forced with that shared prefix; at the
decision cell's token the model's **logit difference**

    ld = logit(clean next cell) - logit(corrupt next cell)

is large on the clean run and negative on the corrupt one if the model solves both.

**Denoising** (clean -> corrupt): run the corrupt prompt, overwrite one activation with the clean
run's, read ld. **Noising** (corrupt -> clean): the reverse. Both are reported as the
normalised logit difference

    recovered = (mean ld_patched - mean ld_corrupt) / (mean ld_clean - mean ld_corrupt)

so 1 = the clean behaviour, 0 = the corrupt one. Denoising near 1 means "this activation alone
carries the difference" (sufficiency); noising near 0 means "the clean run needs it" (necessity).

What is patched, each over the whole batch at once:
* the residual stream entering each block (``blocks.{l}.hook_resid_pre``) and leaving the last
  (``blocks.{L-1}.hook_resid_post``) at one **position group** per pair (:data:`GROUPS`);
* each head's output (``blocks.{l}.attn.hook_z[:, :, h]``) at every position.

TransformerLens' ``patching.generic_activation_patch`` runs every patch on the bridge (with our
per-pair position masks as its ``patch_setter``), and ``get_act_patch_attn_head_out_all_pos``
the head patches as shipped; tests/test_patching.py checks a one-pair result against TL's
``get_act_patch_resid_pre`` position by position.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings

import numpy as np
import pandas as pd
import torch

from mazesearch.data.vocab import ADJLIST_END, ORIGIN_START, TARGET_START

# Position groups per pair (bool masks over its tokens), in picture order.
GROUPS = ("edit", "other_edges", "origin", "target", "path_start", "path", "decision", "all")
GROUP_DOC = {
    "edit": "the tokens that differ between the prompts (the moved target, the moved wall's entry)",
    "other_edges": "every other adjacency-list token (between <ADJLIST_START> and <ADJLIST_END>)",
    "origin": "the origin coordinate",
    "target": "the target coordinate",
    "path_start": "<PATH_START>",
    "path": "the path tokens before the decision cell",
    "decision": "the decision cell's token (where ld is read)",
    "all": "every position up to the decision (patching it all restores the source run)",
}
DIRECTIONS = ("denoise", "noise")


@dataclasses.dataclass(frozen=True)
class PairBatch:
    """P aligned pairs as padded tensors (only positions up to the last decision are kept)."""

    clean: torch.Tensor  # long [P, T]
    corrupt: torch.Tensor  # long [P, T]
    decision_pos: torch.Tensor  # long [P]
    clean_token: torch.Tensor  # long [P]: token of the clean next cell
    corrupt_token: torch.Tensor  # long [P]
    masks: dict[str, torch.Tensor]  # group -> bool [P, T]


def _coord_positions(seq: np.ndarray, marker_id: int, width: int) -> np.ndarray:
    start = int(np.flatnonzero(seq == marker_id)[0]) + 1
    return np.arange(start, start + width)


def pair_batch(clean_seqs: list[np.ndarray], corrupt_seqs: list[np.ndarray], prompt_len: np.ndarray,
               decision_pos: np.ndarray, edited_pos: list[np.ndarray], clean_next: np.ndarray,
               corrupt_next: np.ndarray, cell_token: np.ndarray, vocab, coord_width: int = 1,
               device="cpu") -> PairBatch:
    """Pad the sequences to the longest decision + 1 and build each group's mask.

    ``cell_token[cell]`` is a cell's token id (unary coordinates; pair coordinates are not
    supported here: one logit per cell is needed for ld). The two sequences of a pair must agree
    up to the decision except at ``edited_pos`` (ValueError otherwise); after it they may differ.
    """
    P = len(clean_seqs)
    if coord_width != 1:
        raise ValueError("activation patching needs one token per cell (tokenizer.coord: unary)")
    T = int(np.max(decision_pos)) + 1
    clean = np.full((P, T), vocab.pad_id, dtype=np.int64)
    corrupt = np.full((P, T), vocab.pad_id, dtype=np.int64)
    masks = {g: np.zeros((P, T), dtype=bool) for g in GROUPS}
    o_id, t_id = vocab.token_to_id[ORIGIN_START], vocab.token_to_id[TARGET_START]
    list_end = vocab.token_to_id[ADJLIST_END]
    for i in range(P):
        a, b, d, p = np.asarray(clean_seqs[i]), np.asarray(corrupt_seqs[i]), int(decision_pos[i]), int(prompt_len[i])
        if min(len(a), len(b)) <= d or p > d:
            raise ValueError(f"pair {i}: the decision at {d} must lie in the path part of both sequences "
                             f"(prompt {p} tokens, lengths {len(a)}, {len(b)})")
        differ = np.flatnonzero(a[: d + 1] != b[: d + 1])
        if not np.isin(differ, edited_pos[i]).all():
            raise ValueError(f"pair {i}: tokens differ at {differ.tolist()}, outside the edit {list(edited_pos[i])}")
        clean[i, : d + 1], corrupt[i, : d + 1] = a[: d + 1], b[: d + 1]
        masks["edit"][i, edited_pos[i]] = True
        masks["other_edges"][i, 1 : int(np.flatnonzero(a == list_end)[0])] = True
        masks["other_edges"][i, edited_pos[i]] = False
        masks["origin"][i, _coord_positions(a, o_id, coord_width)] = True
        masks["target"][i, _coord_positions(a, t_id, coord_width)] = True
        masks["path_start"][i, p - 1] = True
        masks["path"][i, p:d] = True
        masks["decision"][i, d] = True
        masks["all"][i, : d + 1] = True
    as_long = lambda x: torch.as_tensor(np.asarray(x, dtype=np.int64), device=device)  # noqa: E731
    return PairBatch(clean=as_long(clean), corrupt=as_long(corrupt), decision_pos=as_long(decision_pos),
                     clean_token=as_long(cell_token[np.asarray(clean_next)]),
                     corrupt_token=as_long(cell_token[np.asarray(corrupt_next)]),
                     masks={g: torch.as_tensor(m, device=device) for g, m in masks.items()})


def logit_diff_fn(batch: PairBatch):
    """logits [P, T, vocab] -> ld [P] at each pair's decision position."""
    rows = torch.arange(len(batch.decision_pos), device=batch.decision_pos.device)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        at = logits[rows, batch.decision_pos]  # [P, vocab]
        return at[rows, batch.clean_token] - at[rows, batch.corrupt_token]

    return metric


def normalised(patched: np.ndarray, ld_clean: np.ndarray, ld_corrupt: np.ndarray) -> np.ndarray:
    """(mean patched - mean corrupt) / (mean clean - mean corrupt) over the last axis (pairs)."""
    gap = float(ld_clean.mean() - ld_corrupt.mean())
    if abs(gap) < 1e-9:
        return np.full(patched.shape[:-1], np.nan)
    return (patched.mean(axis=-1) - float(ld_corrupt.mean())) / gap


@dataclasses.dataclass
class PatchResult:
    ld_clean: np.ndarray  # float64 [P]
    ld_corrupt: np.ndarray  # float64 [P]
    resid: dict[str, np.ndarray]  # direction -> float64 [n_layers + 1, groups, P]: patched ld
    heads: dict[str, np.ndarray]  # direction -> float64 [n_layers, n_heads, P]: patched ld

    def recovered(self, part: str, direction: str) -> np.ndarray:
        """Normalised logit difference: resid [n_layers + 1, groups], heads [n_layers, n_heads]."""
        table = self.resid if part == "resid" else self.heads
        return normalised(table[direction], self.ld_clean, self.ld_corrupt)


def _group_setter(masks: list[torch.Tensor]):
    def setter(corrupted: torch.Tensor, index, clean_activation: torch.Tensor) -> torch.Tensor:
        mask = masks[int(index[1])]  # [P, T]
        corrupted[mask] = clean_activation[mask]
        return corrupted

    return setter


def _quiet():
    """TL draws a progress bar per patch sweep on stderr: noise in a stage log (errors still raise)."""
    return contextlib.redirect_stderr(io.StringIO())


@torch.no_grad()
def patch_pairs(bridge, batch: PairBatch) -> PatchResult:
    """Every resid x group and head patch in both directions (module doc)."""
    from transformer_lens import patching

    n_layers = bridge.cfg.n_layers
    metric = logit_diff_fn(batch)
    names = ([f"blocks.{l}.hook_resid_pre" for l in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]
             + [f"blocks.{l}.attn.hook_z" for l in range(n_layers)])
    logits_clean, cache_clean = bridge.run_with_cache(batch.clean, names_filter=names)
    logits_corrupt, cache_corrupt = bridge.run_with_cache(batch.corrupt, names_filter=names)
    ld_clean = metric(logits_clean).double().cpu().numpy()
    ld_corrupt = metric(logits_corrupt).double().cpu().numpy()
    setter = _group_setter([batch.masks[g] for g in GROUPS])
    pre = pd.DataFrame([(l, g) for l in range(n_layers) for g in range(len(GROUPS))], columns=["layer", "group"])
    post = pd.DataFrame([(n_layers - 1, g) for g in range(len(GROUPS))], columns=["layer", "group"])
    resid, heads = {}, {}
    for direction in DIRECTIONS:
        tokens, source = (batch.corrupt, cache_clean) if direction == "denoise" else (batch.clean, cache_corrupt)
        runs = []
        for act, index in (("resid_pre", pre), ("resid_post", post)):
            with _quiet():
                out = patching.generic_activation_patch(bridge, tokens, source, metric, setter, act,
                                                        index_df=index, reduce="none")
            runs.append(out.values.reshape(-1, len(GROUPS), len(tokens)))  # [layers, groups, P]
        resid[direction] = torch.cat(runs).double().cpu().numpy()
        with _quiet():
            out = patching.get_act_patch_attn_head_out_all_pos(bridge, tokens, source, metric, reduce="none")
        heads[direction] = out.values.double().cpu().numpy()  # [n_layers, n_heads, P]
    return PatchResult(ld_clean=ld_clean, ld_corrupt=ld_corrupt, resid=resid, heads=heads)


def head_ranking(recovered_noise: list[np.ndarray]) -> list[tuple[int, int]]:
    """Heads most necessary first: mean over kinds of the damage ``1 - recovered`` when the head
    alone is noised (corrupt -> clean). ``recovered_noise``: per kind [n_layers, n_heads]. Heads
    without a score in any kind (NaN) come last, in model order."""
    with warnings.catch_warnings():  # an all-NaN head is expected (a kind the model does not solve)
        warnings.simplefilter("ignore", RuntimeWarning)
        damage = np.nanmean(np.stack([1.0 - r for r in recovered_noise]), axis=0)  # [n_layers, n_heads]
    order = np.argsort(-damage, axis=None, kind="stable")
    return [tuple(int(x) for x in np.unravel_index(i, damage.shape)) for i in order]


# ---------------------------------------------------------------------------- report


def resid_rows(n_layers: int) -> list[str]:
    """Row labels of the residual maps: the stream entering each block, then leaving the last."""
    return [f"L{l} in" for l in range(n_layers)] + [f"L{n_layers - 1} out"]


def _last_layer_at_least(column: np.ndarray, level: float) -> int | None:
    hits = np.flatnonzero(np.nan_to_num(column, nan=-np.inf) >= level)
    return int(hits[-1]) if len(hits) else None


def _first_layer_at_least(column: np.ndarray, level: float) -> int | None:
    hits = np.flatnonzero(np.nan_to_num(column, nan=-np.inf) >= level)
    return int(hits[0]) if len(hits) else None


def summarize(results: dict[str, PatchResult], n_tried: dict[str, int], control_gap: dict[str, float]) -> tuple[dict, dict, str]:
    """(metrics, details, heads csv) of the patched kinds (docs/interp.md)."""
    rnd = lambda x: None if x is None or not np.isfinite(x) else round(float(x), 4)  # noqa: E731
    g = {name: j for j, name in enumerate(GROUPS)}
    metrics, details, lines = {}, {"groups": GROUP_DOC, "kinds": {}}, ["kind,layer,head,denoise,noise"]
    for kind, r in results.items():
        den, noi = r.recovered("resid", "denoise"), r.recovered("resid", "noise")  # [layers + 1, groups]
        hden, hnoi = r.recovered("heads", "denoise"), r.recovered("heads", "noise")  # [layers, heads]
        n_layers = hden.shape[0]
        rows = resid_rows(n_layers)
        # where the difference lives: the edit carries it until some block; the decision position
        # holds it from some block on (both read off the denoising map at 0.5)
        carried = _last_layer_at_least(den[:, g["edit"]], 0.5)
        decided = _first_layer_at_least(den[:, g["decision"]], 0.5)
        damage = 1.0 - hnoi
        top = np.unravel_index(int(np.nanargmax(damage)), damage.shape) if np.isfinite(damage).any() else None
        metrics[kind] = {
            "n_pairs": len(r.ld_clean),
            "ld_clean": rnd(r.ld_clean.mean()), "ld_corrupt": rnd(r.ld_corrupt.mean()),
            "control_gap": rnd(control_gap[kind]),
            "top_head_noise_damage": rnd(damage[top]) if top is not None else None,
            "top_head_denoise": rnd(hden[top]) if top is not None else None,
        }
        details["kinds"][kind] = {  # the names live here: strings count as metrics in `dvc metrics show`
            "edit_carries_until": rows[carried] if carried is not None else None,
            "decision_from": rows[decided] if decided is not None else None,
            "top_head": f"L{top[0]}H{top[1]}" if top is not None else None,
            "n_pairs": len(r.ld_clean), "n_pairs_tried": n_tried[kind],
            "ld_clean": {"mean": rnd(r.ld_clean.mean()), "per_pair": [rnd(x) for x in r.ld_clean]},
            "ld_corrupt": {"mean": rnd(r.ld_corrupt.mean()), "per_pair": [rnd(x) for x in r.ld_corrupt]},
            "resid_rows": rows,
            "resid": {d: {grp: [rnd(x) for x in r.recovered("resid", d)[:, j]] for grp, j in g.items()}
                      for d in DIRECTIONS},
            "heads": {d: [[rnd(x) for x in row] for row in r.recovered("heads", d)] for d in DIRECTIONS},
        }
        for layer in range(n_layers):
            for head in range(hden.shape[1]):
                lines.append(f"{kind},{layer},{head},{rnd(hden[layer, head])},{rnd(hnoi[layer, head])}")
    return metrics, details, "\n".join(lines) + "\n"
