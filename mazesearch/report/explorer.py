"""The maze explorer's data: for a bounded sample of evaluated mazes, what the model did at every
step of its own greedy path and what its internals show there, all as values on the maze grid.

For each picked maze the model reads its prompt followed by its own predicted tokens (exactly what
stage evaluate fed it, re-encoded with the suite's tokenizer options). Step j is the query position
``prompt_len - 1 + j``, where the model chose predicted token j. At each step:

* ``attn``  ``[L, H, cells]``: each head's attention from the query summed over the key tokens
  that name a cell (adjacency list, origin, target, path so far);
* ``noncell`` ``[L, H, K]``: the rest of that attention, summed per non-cell token (``<TARGET_END>``,
  ``;``, ``<-->``, ...: the maze's ``noncell_tokens``), so cells plus these sum to 1;
* ``lens``  ``[L + 1, cells]``: the logit lens, each layer's residual decoded through the final
  LayerNorm and unembedding, softmax probability of every cell's token (layer 0 = embedding);
* ``probe`` ``[L + 1, cells]``: a linear ``future_path`` probe per layer (is the cell still to be
  walked?), fitted here on teacher-forced mazes of another dataset and scored beside the same
  probe on the random-init model (:func:`fit_future_path_probes`);
* ``right`` and ``p_right`` ``[L + 1]``: the choices that were right at this step (:func:`right_choices`:
  a cell continuing a shortest path from the model's last cell, ``<PATH_END>`` on the target) and
  the logit lens's probability on them per layer. The maze's ``first_wrong`` is the first step whose
  choice was not right (None when every emitted choice was).

Values in [0, 1] travel as uint8 (``round(255 v)``), base64: ~50 KB per maze instead of ~200 KB
of JSON numbers. Everything runs through the TransformerLens bridge (``run_with_cache``).
"""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pandas as pd
import torch

from mazesearch.data.maze import MazeBatch, edge_endpoints
from mazesearch.data.tokens import PATH_END, TokenBatch, Vocab
from mazesearch.interp.labels import future_path
from mazesearch.interp.lens import decode_cached, lens_hooks
from mazesearch.interp.probes import fit_logistic_multilabel, split_by_maze
from mazesearch.viz.overlay import open_edge_set, step_kind


def cell_of_token(vocab: Vocab, grid_n: int) -> np.ndarray:
    """Cell ``r*n + c`` named by every unary coordinate token of an n x n grid, else -1: ``int64 [V]``."""
    r, c = vocab.coord_row.astype(np.int64), vocab.coord_col.astype(np.int64)
    inside = (r >= 0) & (r < grid_n) & (c >= 0) & (c < grid_n)
    return np.where(inside, r * grid_n + c, -1)


END = -2  # <PATH_END> among a step's choices (cells are >= 0, -1 names a token that is no cell)


def distances_to(n: int, open_row: np.ndarray, target: int) -> np.ndarray:
    """Moves from every cell to ``target`` through open edges: ``int64 [n*n]``, -1 if unreachable."""
    nbrs: list[list[int]] = [[] for _ in range(n * n)]
    for (a, b), bit in zip(edge_endpoints(n).tolist(), np.asarray(open_row).tolist()):
        if bit:
            nbrs[a].append(b)
            nbrs[b].append(a)
    dist = np.full(n * n, -1, dtype=np.int64)
    dist[target], frontier = 0, [target]
    while frontier:
        nxt = []
        for a in frontier:
            for b in nbrs[a]:
                if dist[b] < 0:
                    dist[b] = dist[a] + 1
                    nxt.append(b)
        frontier = nxt
    return dist


def step_kinds(n: int, open_row: np.ndarray, chosen: list[int]) -> list[str]:
    """What each choice did, for drawing: "start" (the first cell), "move", "wall" (through a
    closed edge), "jump" (to a non-neighbour), "stay" (the same cell again) relative to the last
    cell chosen before it; "noncell" (a token naming no cell), "end" (<PATH_END>), "none" (nothing
    chosen: the model stopped)."""
    edges, last, kinds = open_edge_set(n, open_row), None, []
    for c in chosen:
        if c == END:
            kinds.append("end")
        elif c is None:
            kinds.append("none")
        elif c < 0:
            kinds.append("noncell")
        else:
            kinds.append("start" if last is None else step_kind(n, edges, last, c))
            last = c
    return kinds


def right_choices(n: int, open_row: np.ndarray, origin: int, target: int, chosen: list[int]
                  ) -> tuple[list[list[int]], int | None]:
    """For each step j (the model chose ``chosen[j]``: a cell, -1 for a token naming no cell, END
    for <PATH_END>, None for nothing), the choices that were right there given where the model
    stood: the origin before any cell; on the target, <PATH_END>; elsewhere each open neighbour of
    the last chosen cell one move closer to the target (several where shortest paths split; none
    off the maze). Returns (right choices per step, the first step whose choice is not among its
    right ones, or None)."""
    dist = distances_to(n, open_row, target)
    edges = open_edge_set(n, open_row)
    last, out, first_wrong = None, [], None
    for j, c in enumerate(chosen):
        if last is None:
            right = [int(origin)]
        elif last == target:
            right = [END]
        elif dist[last] < 0:
            right = []
        else:
            right = sorted(b for b in range(n * n) if dist[b] == dist[last] - 1
                           and (min(last, b), max(last, b)) in edges)
        out.append(right)
        if first_wrong is None and c not in right:
            first_wrong = j
        if c is not None and c >= 0:
            last = int(c)
    return out, first_wrong


def is_exact(exact_path) -> np.ndarray:
    """Predictions' ``exact_path`` column as bool; anything but True (None: undefined) is a failure."""
    return np.array([e is True or e == 1 for e in exact_path], dtype=bool)


def pick_rows(exact: np.ndarray, k: int) -> np.ndarray:
    """``k`` rows, failures first: up to ceil(k/2) failures (anything but exact_path True), then
    successes, then more failures if successes run short; each group in file order."""
    ok = is_exact(exact)
    fail, good = np.flatnonzero(~ok), np.flatnonzero(ok)
    n_fail = max(min(len(fail), (k + 1) // 2), k - len(good))
    return np.concatenate([fail[:n_fail], good[: k - n_fail]]).astype(np.int64)


def pack(values: np.ndarray) -> str:
    """Values in [0, 1] (clipped) -> base64 of ``uint8 round(255 v)``, C order."""
    q = np.rint(np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0) * 255.0).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def unpack(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack` (to 1/255): ``float64 shape``."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(shape) / 255.0


def padded(seqs: list[np.ndarray], pad_id: int, device) -> torch.Tensor:
    """Right-padded ``long [B, T]`` (the model is causal: padding never changes earlier positions)."""
    T = max(len(s) for s in seqs)
    out = np.full((len(seqs), T), pad_id, dtype=np.int64)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return torch.from_numpy(out).to(device)


def residuals(bridge, cache, bi: torch.Tensor, pi: torch.Tensor) -> np.ndarray:
    """From a cache holding ``lens_hooks``: the residual stream entering block 0 and after every
    block at rows (bi, pi), ``float64 [L + 1, rows, d]``."""
    return np.stack([cache[n][bi, pi].double().cpu().numpy() for n in lens_hooks(bridge.cfg.n_layers)])


# ---------------------------------------------------------------------------- probes


@dataclasses.dataclass(frozen=True)
class ProbeLayer:
    mean: np.ndarray  # [d]
    std: np.ndarray  # [d]
    W: np.ndarray  # [d, cells]
    b: np.ndarray  # [cells]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X [rows, d]`` -> probability each cell is still to be walked ``[rows, cells]``."""
        Z = ((X - self.mean) / self.std) @ self.W + self.b
        return 1.0 / (1.0 + np.exp(-Z))


def _path_rows(mazes: MazeBatch, tokens: TokenBatch) -> pd.DataFrame:
    """One row per <PATH_START> and path-cell position of every maze (the index of mazesearch.interp.labels)."""
    frames = []
    for i in range(len(mazes)):
        path = mazes.path(i)
        P = int(tokens.prompt_len[i])
        steps = np.arange(len(path) + 1)  # 0 = <PATH_START>, k + 1 = path cell k
        frames.append(pd.DataFrame({
            "maze_row": i, "maze_id": np.uint64(mazes.maze_id[i]),
            "kind": np.where(steps == 0, "path_start", "path"), "path_step": steps.astype(np.int32),
            "current_cell": np.concatenate([[-1], path]).astype(np.int32), "token_pos": P - 1 + steps}))
    return pd.concat(frames, ignore_index=True)


def _micro_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 2.0 * tp / denom if denom else float("nan")


def fit_future_path_probes(bridges: dict, mazes: MazeBatch, tokens: TokenBatch, pad_id: int, *, C: float,
                           max_iter: int, test_frac: float, seed: int, batch_size: int
                           ) -> tuple[list[ProbeLayer], dict[str, list[float]]]:
    """Per layer (embedding + after every block), a ``future_path`` probe fitted on the train-side
    mazes' teacher-forced residuals of ``bridges["trained"]``; its held-out micro-F1 beside the same
    fit on every other bridge (controls). Returns the trained probes and ``{bridge name: [F1 per layer]}``."""
    index = _path_rows(mazes, tokens)
    Y = future_path(mazes, index).values  # bool [rows, cells]
    test = split_by_maze(index["maze_id"].to_numpy(), test_frac, seed)
    probes, scores = [], {}
    for name, bridge in bridges.items():
        device = bridge.W_U.device
        X = []
        for lo in range(0, len(mazes), batch_size):
            rows = index[(index["maze_row"] >= lo) & (index["maze_row"] < lo + batch_size)]
            ids = padded([tokens.tokens(i).astype(np.int64) for i in range(lo, min(lo + batch_size, len(mazes)))],
                         pad_id, device)
            bi = torch.tensor(rows["maze_row"].to_numpy() - lo, device=device)
            pi = torch.tensor(rows["token_pos"].to_numpy(), device=device)
            with torch.no_grad():
                _, cache = bridge.run_with_cache(ids, names_filter=lens_hooks(bridge.cfg.n_layers))
            X.append(residuals(bridge, cache, bi, pi))
        X = np.concatenate(X, axis=1)  # [L + 1, rows, d]
        scores[name] = []
        for layer in X:
            mean, std = layer[~test].mean(axis=0), layer[~test].std(axis=0)
            std[std < 1e-8] = 1.0
            W, b = fit_logistic_multilabel((layer[~test] - mean) / std, Y[~test], C, max_iter)
            probe = ProbeLayer(mean, std, W, b)
            scores[name].append(_micro_f1(probe.predict(layer[test]) > 0.5, Y[test]))
            if name == "trained":
                probes.append(probe)
    return probes, scores


# ---------------------------------------------------------------------------- one suite


def explore(bridge, vocab: Vocab, mazes: MazeBatch, tokens: TokenBatch, predicted: list[np.ndarray],
            probes: list[ProbeLayer]) -> list[dict]:
    """One record per maze (rows of ``mazes`` / ``tokens``, ``predicted[i]`` the model's tokens after
    <PATH_START>, <PATH_END> included if emitted). Record layout: docs/report.md."""
    n = int(mazes.grid_n)
    cells = n * n
    cell_of = cell_of_token(vocab, n)
    L, H = bridge.cfg.n_layers, bridge.cfg.n_heads
    device = bridge.W_U.device
    seqs, queries = [], []
    for i, pred in enumerate(predicted):
        prompt = tokens.prompt(i).astype(np.int64)
        seqs.append(np.concatenate([prompt, np.asarray(pred, dtype=np.int64)]))
        queries.append(len(prompt) - 1 + np.arange(max(len(pred), 1)))  # step j chooses predicted token j
    ids = padded(seqs, vocab.pad_id, device)
    bi = torch.tensor(np.concatenate([np.full(len(q), b) for b, q in enumerate(queries)]), device=device)
    pi = torch.tensor(np.concatenate(queries), device=device)

    patterns = [f"blocks.{layer}.attn.hook_pattern" for layer in range(L)]
    with torch.no_grad():  # one forward pass: attention, the lens and the probes' residuals
        _, cache = bridge.run_with_cache(ids, names_filter=patterns + lens_hooks(L))
        # [L, rows, H, keys]: each step's attention row
        attn = torch.stack([cache[p][bi, :, pi] for p in patterns]).double().cpu().numpy()
        lens = torch.softmax(decode_cached(bridge, cache, bi, pi).double(), dim=-1).cpu().numpy()  # [L+1, rows, V]
    resid = residuals(bridge, cache, bi, pi)  # [L + 1, rows, d]
    probe = np.stack([p.predict(x) for p, x in zip(probes, resid)]) if probes else np.zeros((0, len(pi), cells))

    cell_token = np.flatnonzero(cell_of >= 0)
    token_of_cell = np.full(cells, -1, dtype=np.int64)
    token_of_cell[cell_of[cell_token]] = cell_token
    end_id = vocab.id(PATH_END)
    records, row = [], 0
    for i, (seq, q) in enumerate(zip(seqs, queries)):
        S = len(q)
        rows = slice(row, row + S)
        row += S
        key_cell = cell_of[seq]  # [T]
        on_cell = key_cell >= 0
        # non-cell keys of this maze, grouped by token: [K] token ids and each key's group
        keys = np.arange(len(seq)) <= q[-1]  # tokens some step's query reads
        kinds, key_kind = np.unique(seq[~on_cell & keys], return_inverse=True)
        group = np.full(len(seq), -1)
        group[~on_cell & keys] = key_kind
        mass = np.zeros((S, L, H, cells))
        other = np.zeros((S, L, H, len(kinds)))
        for s in range(S):  # attention mass per cell: sum over the keys naming it (keys up to the query)
            k = q[s] + 1
            for layer in range(L):
                for h in range(H):
                    w = attn[layer, row - S + s, h, :k]
                    mass[s, layer, h] = np.bincount(key_cell[:k][on_cell[:k]], weights=w[on_cell[:k]],
                                                    minlength=cells)
                    other[s, layer, h] = np.bincount(group[:k][~on_cell[:k]], weights=w[~on_cell[:k]],
                                                     minlength=len(kinds))
        lens_cells = np.zeros((S, L + 1, cells))
        lens_cells[:, :, cell_of[cell_token]] = lens[:, rows][:, :, cell_token].transpose(1, 0, 2)
        top = lens[:, rows].argmax(axis=-1)  # [L+1, S]
        top_p = np.take_along_axis(lens[:, rows], top[..., None], axis=-1)[..., 0]
        pred = np.asarray(predicted[i], dtype=np.int64)
        chosen = [None if s >= len(pred) else END if pred[s] == end_id else int(cell_of[pred[s]])
                  for s in range(S)]
        right, first_wrong = right_choices(n, mazes.open[i], int(mazes.origin[i]), int(mazes.target[i]), chosen)
        kinds_drawn = step_kinds(n, mazes.open[i], chosen)
        steps = []
        for s in range(S):
            right_ids = [end_id if c == END else int(token_of_cell[c]) for c in right[s]]
            p_right = lens[:, row - S + s][:, right_ids].sum(axis=-1)  # [L + 1]
            steps.append({
                "token": vocab.id_to_token[int(pred[s])] if s < len(pred) else "",
                "cell": int(cell_of[pred[s]]) if s < len(pred) else -1,
                "kind": kinds_drawn[s],
                "right": right[s],
                "p_right": [round(float(p), 3) for p in p_right] if right_ids else None,
                "lens_top": [[vocab.id_to_token[int(top[layer, s])], round(float(top_p[layer, s]), 3)]
                             for layer in range(L + 1)]})
        records.append({
            "maze_id": str(int(mazes.maze_id[i])), "n": n, "open": "".join(map(str, mazes.open[i].tolist())),
            "origin": int(mazes.origin[i]), "target": int(mazes.target[i]),
            "true_path": [int(c) for c in mazes.path(i)], "steps": steps, "first_wrong": first_wrong,
            "attn": pack(mass), "lens": pack(lens_cells),
            "noncell_tokens": [vocab.id_to_token[int(t)] for t in kinds], "noncell": pack(other),
            "probe": pack(probe[:, rows].transpose(1, 0, 2)) if probes else None,
        })
    return records
