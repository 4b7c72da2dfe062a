"""Attention-head hypotheses: how much of each head's attention lands where a hypothesis says.

A hypothesis names, for some query positions of a maze sequence, a set of key positions
(:data:`HYPOTHESES`, built from the token roles of :mod:`mazesearch.interp.roles`). For a head,
its **score** is the attention mass on those keys, averaged over every scored query of every
maze; its **chance** is the mass a uniform causal head would put there, ``|keys| / (q + 1)``
at query q, averaged over the same queries. A query for which the hypothesis names no visible
key is not scored (it cannot be tested). The random-init control is the same computation on
``GPT(cfg, seed=control_seed)``.

Patterns come from TransformerLens (``blocks.{l}.attn.hook_pattern`` via ``run_with_cache`` on
the bridge), a batch of similar-length mazes per call, right-padded: the model is causal, so
padding never changes a real query's pattern, and padded queries have no keys.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.interp.roles import token_roles

HYPOTHESES = {  # name -> what it predicts (docs/interp.md)
    "lattice_adjacency": "from a coordinate token: the tokens of cells at lattice distance 1 (walls ignored)",
    "adjlist_occurrences": "from a path token: the current cell's tokens in the adjacency list",
    "adjlist_partners": "from a path token: the cells listed as connected to it (the other side of <-->)",
    "target": "from a path token: the target token",
    "origin": "from a path token: the origin token",
    "sep_back_1": "from ';': the token 1 back (unary coordinates: the edge's second cell)",
    "sep_back_3": "from ';': the token 3 back (unary coordinates: the edge's first cell)",
}
N_BOOT = 1000  # bootstrap resamples of the mazes for the confidence intervals


def hypothesis_keys(roles: pd.DataFrame, grid_n: int, length: int | None = None) -> np.ndarray:
    """``bool [n_hyp, length, length]`` (order of :data:`HYPOTHESES`): ``keys[h, q, k]`` = the
    hypothesis says query q attends to position k (always k <= q). Rows of unscored queries are
    all False. ``length`` (>= len(roles)) pads with positions that are never queries or keys.
    """
    T = len(roles)
    length = T if length is None else length
    if length < T:
        raise ValueError(f"length {length} is shorter than the sequence ({T} tokens)")
    role = roles["role"].to_numpy().astype(str)
    cell = roles["cell"].to_numpy().astype(np.int64)
    part = roles["coord_part"].to_numpy().astype(str)
    edge = roles["edge"].to_numpy().astype(np.int64)
    pos = np.arange(T)
    causal = pos[None, :] <= pos[:, None]  # [q, k]
    is_coord = cell >= 0
    complete = is_coord & np.isin(part, ("cell", "col"))  # where a coordinate is complete
    path_q = complete & (role == "path")
    r, c = np.divmod(cell, grid_n)
    manhattan = np.abs(r[:, None] - r[None, :]) + np.abs(c[:, None] - c[None, :])  # [q, k]

    listed = np.isin(role, ("edge_from", "edge_to")) & ("adjlist_start" in role)  # walls: no connections
    partner = np.full(T, -1)  # [k] the cell across <--> from a listed cell's token
    if listed.any():
        n_listed = int(edge[listed].max()) + 1
        first, second = np.full(n_listed, -1), np.full(n_listed, -1)
        first[edge[role == "edge_from"]] = cell[role == "edge_from"]
        second[edge[role == "edge_to"]] = cell[role == "edge_to"]
        partner[listed] = np.where(role[listed] == "edge_from", second[edge[listed]], first[edge[listed]])
    sep = role == "edge_sep"

    keys = np.zeros((len(HYPOTHESES), length, length), dtype=bool)
    for h, name in enumerate(HYPOTHESES):
        if name == "lattice_adjacency":
            m = complete[:, None] & is_coord[None, :] & (manhattan == 1)
        elif name == "adjlist_occurrences":
            m = path_q[:, None] & listed[None, :] & (cell[None, :] == cell[:, None])
        elif name == "adjlist_partners":
            m = path_q[:, None] & listed[None, :] & (partner[None, :] == cell[:, None])
        elif name in ("target", "origin"):
            m = path_q[:, None] & (role == name)[None, :]
        else:  # sep_back_<d>
            back = int(name.rsplit("_", 1)[1])
            m = sep[:, None] & (pos[None, :] == pos[:, None] - back)
        keys[h, :T, :T] = m & causal
    return keys


def chance_mass(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """keys ``bool [..., T, T]`` -> (summed chance ``float64 [...]``, scored queries ``int64 [...]``):
    a uniform causal head at query q puts ``|keys of q| / (q + 1)`` on them."""
    T = keys.shape[-1]
    per_query = keys.sum(-1) / np.arange(1, T + 1)  # [..., T]
    return per_query.sum(-1), keys.any(-1).sum(-1).astype(np.int64)


def key_mass(pattern: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Attention on the hypothesis keys, summed over queries.

    pattern ``[batch, layer, head, q, k]`` (rows sum to 1), keys ``bool [hyp, batch, q, k]`` ->
    ``float64 [hyp, batch, layer, head]``.
    """
    b, L, H, T, _ = pattern.shape
    flat = pattern.reshape(b, L * H, T * T).double()  # one matmul per maze: no [b, L, H, hyp, T, T] temporary
    mass = torch.bmm(flat, keys.reshape(len(keys), b, T * T).permute(1, 2, 0).double())  # [b, L*H, hyp]
    return mass.permute(2, 0, 1).reshape(len(keys), b, L, H)


@dataclasses.dataclass(frozen=True)
class HeadScores:
    """Per-maze sums; every score is a ratio of sums over mazes (so a maze counts by its queries)."""

    mass: np.ndarray  # float64 [hyp, maze, layer, head]: attention on the keys, summed over queries
    chance: np.ndarray  # float64 [hyp, maze]: the uniform head's mass, summed over the same queries
    count: np.ndarray  # int64 [hyp, maze]: scored queries
    extra: np.ndarray | None = None  # float64 [x, maze, layer, head]: mass on score_heads' extra_keys

    def score(self) -> np.ndarray:  # float64 [hyp, layer, head], NaN where nothing was scored
        n = self.count.sum(1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.mass.sum(1) / n[:, None, None]

    def chance_rate(self) -> np.ndarray:  # float64 [hyp]
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.chance.sum(1) / self.count.sum(1)

    def bootstrap(self, seed: int, n_boot: int = N_BOOT) -> np.ndarray:
        """95% percentile interval of :meth:`score`, resampling mazes with replacement (seeded):
        ``float64 [2, hyp, layer, head]``, NaN for a hypothesis with no scored query."""
        n_mazes = self.mass.shape[1]
        rng = np.random.default_rng(seed)
        weights = np.stack([np.bincount(rng.integers(0, n_mazes, n_mazes), minlength=n_mazes)
                            for _ in range(n_boot)]).astype(np.float64)  # [boot, maze]
        out = np.full((2, *self.mass.shape[:1], *self.mass.shape[2:]), np.nan)
        for h in np.flatnonzero(self.count.sum(1) > 0):
            count = weights @ self.count[h]  # [boot]; a resample may miss every scored maze
            mass = np.einsum("rm,mlk->rlk", weights, self.mass[h])[count > 0]
            out[:, h] = np.percentile(mass / count[count > 0, None, None], [2.5, 97.5], axis=0)
        return out


def sequence_roles(tokens: TokenBatch, vocab: Vocab, grid_n: int) -> list[pd.DataFrame]:
    """Token roles of every sequence; a malformed one raises ValueError naming its row."""
    out = []
    for i in range(len(tokens)):
        try:
            out.append(token_roles(tokens.tokens(i), vocab, grid_n))
        except ValueError as exc:
            raise ValueError(f"sequence {i}: {exc}") from None
    return out


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Rows grouped into batches of similar length (stable sort): little padding per forward."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def attention_patterns(bridge, ids: torch.Tensor) -> torch.Tensor:
    """TransformerLens patterns of every layer: ids ``[batch, T]`` -> ``[batch, layer, head, T, T]``."""
    n_layers = bridge.cfg.n_layers
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(n_layers)]
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(ids, names_filter=names)
    return torch.stack([cache[name] for name in names], dim=1)


def score_heads(bridge, tokens: TokenBatch, roles: Sequence[pd.DataFrame], vocab: Vocab, grid_n: int,
                batch_size: int, extra_keys: Callable[[int, int], np.ndarray] | None = None) -> HeadScores:
    """Run ``bridge`` over every sequence of ``tokens`` (batched by length) and sum each head's
    attention on each hypothesis' keys, per maze. ``extra_keys(row, T)`` (``bool [x, T, T]``, the
    same x for every row): more key sets scored from the same forward passes (``.extra``)."""
    B, device = len(tokens), next(bridge.parameters()).device
    n_hyp, L, H = len(HYPOTHESES), bridge.cfg.n_layers, bridge.cfg.n_heads
    mass = np.zeros((n_hyp, B, L, H))
    chance = np.zeros((n_hyp, B))
    count = np.zeros((n_hyp, B), dtype=np.int64)
    extra = None
    for rows in length_batches(tokens.lengths, batch_size):
        batch = tokens.take(rows)
        T = int(batch.lengths.max())
        keys = np.stack([hypothesis_keys(roles[i], grid_n, T) for i in rows], axis=1)  # [hyp, b, T, T]
        ids = torch.from_numpy(batch.padded(vocab.pad_id, dtype=np.int64)).to(device)
        pattern = attention_patterns(bridge, ids)  # [b, L, H, T, T]
        mass[:, rows] = key_mass(pattern, torch.from_numpy(keys).to(device)).cpu().numpy()
        chance[:, rows], count[:, rows] = chance_mass(keys)
        if extra_keys is not None:
            more = np.stack([extra_keys(int(i), T) for i in rows], axis=1)  # [x, b, T, T]
            extra = np.zeros((len(more), B, L, H)) if extra is None else extra
            extra[:, rows] = key_mass(pattern, torch.from_numpy(more).to(device)).cpu().numpy()
    return HeadScores(mass=mass, chance=chance, count=count, extra=extra)


def picture_query(keys: np.ndarray, roles: pd.DataFrame, name: str) -> int | None:
    """The query one picture shows for hypothesis ``name`` (keys ``bool [T, T]`` of one maze):
    the middle scored path token (``;`` for the sep_back hypotheses); None if the maze has none."""
    scored = keys.any(-1)[: len(roles)]
    want = "edge_sep" if name.startswith("sep_back") else "path"
    found = np.flatnonzero(scored & (roles["role"].to_numpy() == want))
    return int(found[len(found) // 2]) if len(found) else None
