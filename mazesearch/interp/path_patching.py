"""Path patching on counterfactual pairs: do the heads activation patching found form a circuit?
(docs/interp.md, "Path patching")

A **path** is a sender and one or more receiver heads. The corrupt prompt runs while each
receiver reads, through its q, k and v inputs (all three), the residual stream it would see if
only the sender were clean and every other component frozen at its corrupt value:

    receiver input = LN1(resid_pre_corrupt[L_r] + delta)        delta: [P, T, d_model]

* sender ``LxHy`` (a head, layer < every receiver's): ``delta`` is the head's clean-minus-corrupt
  write ``(z_clean - z_corrupt)[:, :, y] @ W_O[y]`` at every position. The residual stream is a
  sum, so "everything else frozen" is exactly corrupt + delta.
* sender ``edit`` (the edited token positions): ``delta`` is ``resid_pre_clean[L_r] -
  resid_pre_corrupt[L_r]`` at the edit positions, 0 elsewhere: all that the embeddings and the
  blocks before wrote there, read by the receiver alone.

Every other reader (other heads, MLPs, the unembedding) keeps the corrupt run, while what the
receivers write flows on normally to the logits. Read like activation patching's denoising:
``(mean ld_patched - mean ld_corrupt) / (mean ld_clean - mean ld_corrupt)`` (1 = the path carries
the whole difference).

Two passes per path, TransformerLens hooks only: pass 1 runs the corrupt prompt to the receivers'
layer with ``delta`` added to ``blocks.{L}.hook_resid_pre`` and records ``attn.hook_q/k/v``
(``stop_at_layer`` keeps it short); pass 2 runs the corrupt prompt again with the receivers'
slices of ``hook_q/k/v`` replaced. TL 4.3's ``patching.get_act_patch_direct_path`` does the
same edge one input at a time, but needs ``cfg.use_split_qkv_input``, which the native bridge's
``AttentionBridge`` refuses (NotImplementedError).

The control (:func:`random_paths`): paths of the same shape from a seeded numpy Generator: as
many receivers, drawn from all heads; a head sender replaced by a random head below every
receiver; the configured path itself never drawn.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import torch

from mazesearch.interp.patching import PairBatch, logit_diff_fn, normalised

EDIT = "edit"
INPUTS = ("q", "k", "v")
Head = tuple[int, int]  # (layer, head)


def parse_head(name: str) -> Head:
    """"L2H1" -> (2, 1); ValueError otherwise."""
    m = re.fullmatch(r"L(\d+)H(\d+)", name)
    if m is None:
        raise ValueError(f"{name!r} is not a head (LxHy, e.g. L2H1)")
    return int(m[1]), int(m[2])


def head_name(head: Head) -> str:
    return f"L{head[0]}H{head[1]}"


@dataclasses.dataclass(frozen=True)
class Path:
    sender: Head | str  # a head, or EDIT
    receivers: tuple[Head, ...]  # sorted, distinct

    @classmethod
    def parse(cls, sender: str, receivers: list[str] | str) -> "Path":
        rs = [receivers] if isinstance(receivers, str) else list(receivers)
        return cls(EDIT if sender == EDIT else parse_head(sender), tuple(sorted({parse_head(r) for r in rs})))

    def check(self, n_layers: int, n_heads: int) -> "Path":
        """ValueError unless every head exists and a head sender lies below every receiver."""
        heads = self.receivers + (() if self.sender == EDIT else (self.sender,))
        bad = [head_name(h) for h in heads if not (0 <= h[0] < n_layers and 0 <= h[1] < n_heads)]
        if bad or not self.receivers:
            raise ValueError(f"path {self}: {'heads ' + ', '.join(bad) + ' not in' if bad else 'no receiver in'} "
                             f"a model of {n_layers} layers x {n_heads} heads")
        if self.sender != EDIT and self.sender[0] >= min(r[0] for r in self.receivers):
            raise ValueError(f"path {self}: the sender's layer must lie below every receiver's")
        return self

    def __str__(self) -> str:
        s = EDIT if self.sender == EDIT else head_name(self.sender)
        return f"{s} -> {'+'.join(head_name(r) for r in self.receivers)}"


def random_paths(path: Path, n_layers: int, n_heads: int, n: int, rng: np.random.Generator) -> list[Path]:
    """``n`` random paths shaped like ``path`` (module doc); fewer only if none other exists."""
    heads = [(l, h) for l in range(n_layers) for h in range(n_heads)]
    k = len(path.receivers)
    senders = [EDIT] if path.sender == EDIT else [s for s in heads if n_heads * (n_layers - 1 - s[0]) >= k]
    out: list[Path] = []
    for _ in range(100 * n):  # rejection of the configured path: bounded, deterministic
        if len(out) == n or not senders:
            break
        s = senders[int(rng.integers(len(senders)))]
        pool = heads if s == EDIT else [r for r in heads if r[0] > s[0]]
        pick = rng.choice(len(pool), size=k, replace=False)
        p = Path(s, tuple(sorted(pool[int(i)] for i in pick)))
        if p != path:
            out.append(p)
    return out


class PathPatcher:
    """Caches both runs of one batch once; :meth:`patched_ld` runs one path (two passes)."""

    @torch.no_grad()
    def __init__(self, bridge, batch: PairBatch):
        cfg = bridge.cfg
        self.bridge, self.batch, self.metric = bridge, batch, logit_diff_fn(batch)
        names = [f"blocks.{l}.{n}" for l in range(cfg.n_layers) for n in ("hook_resid_pre", "attn.hook_z")]
        logits_clean, self.clean = bridge.run_with_cache(batch.clean, names_filter=names)
        logits_corrupt, self.corrupt = bridge.run_with_cache(batch.corrupt, names_filter=names)
        self.ld_clean = self.metric(logits_clean).double().cpu().numpy()  # [P]
        self.ld_corrupt = self.metric(logits_corrupt).double().cpu().numpy()  # [P]
        self._pass1: dict = {}  # (sender, layer) -> {"q"|"k"|"v": [P, T, n_heads, d_head]}
        self._pass2: dict = {}  # (path, inputs) -> ld [P]

    def delta(self, sender: Head | str, layer: int) -> torch.Tensor:
        """What the sender changes in the residual stream entering ``layer``: [P, T, d_model]."""
        if sender == EDIT:
            name = f"blocks.{layer}.hook_resid_pre"
            mask = self.batch.masks["edit"].unsqueeze(-1)  # bool [P, T, 1]
            return (self.clean[name] - self.corrupt[name]) * mask
        sl, sh = sender
        name = f"blocks.{sl}.attn.hook_z"
        dz = self.clean[name][:, :, sh] - self.corrupt[name][:, :, sh]  # [P, T, d_head]
        return dz @ self.bridge.blocks[sl].attn.W_O[sh]  # W_O[sh]: [d_head, d_model]

    def _fresh(self, sender: Head | str, layer: int) -> dict[str, torch.Tensor]:
        """Pass 1: q, k, v [P, T, n_heads, d_head] of ``layer`` with the sender's delta added to the
        corrupt residual entering it (memoised: random paths share senders)."""
        key = (sender, layer)
        if key not in self._pass1:
            d, got = self.delta(sender, layer), {}

            def add(resid, hook):
                return resid + d

            def keeper(c):
                def keep(x, hook):
                    got[c] = x.clone()
                return keep

            hooks = [(f"blocks.{layer}.hook_resid_pre", add)] + [(f"blocks.{layer}.attn.hook_{c}", keeper(c))
                                                                 for c in INPUTS]
            self.bridge.run_with_hooks(self.batch.corrupt, fwd_hooks=hooks, stop_at_layer=layer + 1)
            self._pass1[key] = got
        return self._pass1[key]

    @torch.no_grad()
    def patched_ld(self, path: Path, inputs: tuple[str, ...] = INPUTS) -> np.ndarray:
        """ld [P] of the corrupt run whose receivers read the sender's clean output via ``inputs``."""
        key = (path, inputs)
        if key in self._pass2:
            return self._pass2[key]
        hooks = []
        for layer in sorted({r[0] for r in path.receivers}):
            fresh, mine = self._fresh(path.sender, layer), [r[1] for r in path.receivers if r[0] == layer]
            for c in inputs:
                def put(x, hook, new=fresh[c], mine=mine):  # pass 2: only the receivers' slices change
                    x = x.clone()
                    x[:, :, mine] = new[:, :, mine]
                    return x
                hooks.append((f"blocks.{layer}.attn.hook_{c}", put))
        ld = self.metric(self.bridge.run_with_hooks(self.batch.corrupt, fwd_hooks=hooks)).double().cpu().numpy()
        self._pass2[key] = ld
        return ld

    def fraction(self, patched: np.ndarray) -> float:
        """Normalised logit difference of ld [P] (activation patching's)."""
        return float(normalised(patched, self.ld_clean, self.ld_corrupt))


@dataclasses.dataclass
class PathResult:
    kind: str
    path: Path
    fraction: float  # through q, k and v
    by_input: dict[str, float]  # "q" / "k" / "v" alone
    random: list[Path]
    random_fractions: np.ndarray  # float64 [n_random]

    @property
    def random_mean(self) -> float:
        return float(self.random_fractions.mean()) if len(self.random_fractions) else float("nan")

    @property
    def random_above(self) -> float:
        """Share of the random paths restoring at least as much as the configured one."""
        r = self.random_fractions
        return float(np.mean(r >= self.fraction)) if len(r) and np.isfinite(self.fraction) else float("nan")


def run_paths(bridge, batch: PairBatch, kind: str, paths: list[Path], n_random: int, seed: int,
              index: list[int]) -> list[PathResult]:
    """Every configured path of one kind beside its random control. ``index[i]``: the path's place
    in the params list, which seeds its control (the same draws whatever other kinds exist)."""
    cfg, patcher, out = bridge.cfg, PathPatcher(bridge, batch), []
    for path, i in zip(paths, index):
        control = random_paths(path.check(cfg.n_layers, cfg.n_heads), cfg.n_layers, cfg.n_heads, n_random,
                               np.random.default_rng([seed, i]))
        out.append(PathResult(
            kind=kind, path=path, fraction=patcher.fraction(patcher.patched_ld(path)),
            by_input={c: patcher.fraction(patcher.patched_ld(path, (c,))) for c in INPUTS}, random=control,
            random_fractions=np.array([patcher.fraction(patcher.patched_ld(p)) for p in control], dtype=np.float64)))
    return out


def summarize(results: list[PathResult], n_random: int) -> tuple[dict, list[dict]]:
    """(per kind: the headline numbers of its first path, details rows of every path)."""
    rnd = lambda x: None if x is None or not np.isfinite(x) else round(float(x), 4) + 0.0  # noqa: E731 (no -0.0)
    metrics: dict[str, dict] = {}
    rows = []
    for r in results:
        metrics.setdefault(r.kind, {"path_fraction": rnd(r.fraction), "random_path_fraction": rnd(r.random_mean),
                                    "random_path_above": rnd(r.random_above)})
        f = r.random_fractions
        rows.append({"kind": r.kind, "path": str(r.path), "fraction": rnd(r.fraction),
                     "by_input": {c: rnd(v) for c, v in r.by_input.items()},
                     "random": {"n": len(f), "n_asked": n_random, "mean": rnd(r.random_mean),
                                "sd": rnd(f.std()) if len(f) else None, "above": rnd(r.random_above),
                                "paths": [str(p) for p in r.random], "fractions": [rnd(x) for x in f]}})
    return metrics, rows
