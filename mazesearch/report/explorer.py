"""The maze explorer's data: for a bounded sample of evaluated mazes, what the model did at every
step of its own greedy path and what its internals show there, all as values on the maze grid.

For each picked maze the model reads its prompt followed by its own predicted tokens (exactly what
stage evaluate fed it, re-encoded with the suite's tokenizer options). Step j is the query position
``prompt_len - 1 + j``, where the model chose predicted token j. At each step:

* ``attn``  ``[L, H, cells]``: each head's attention from the query summed over the key tokens
  that name a cell (adjacency list, origin, target, path so far);
* ``lens``  ``[L + 1, cells]``: the logit lens, each layer's residual decoded through the final
  LayerNorm and unembedding, softmax probability of every cell's token (layer 0 = embedding);
* ``probe`` ``[L + 1, cells]``: a linear ``future_path`` probe per layer (is the cell still to be
  walked?), fitted here on teacher-forced mazes of another dataset and scored beside the same
  probe on the random-init model (:func:`fit_future_path_probes`).

Values in [0, 1] travel as uint8 (``round(255 v)``), base64: ~50 KB per maze instead of ~200 KB
of JSON numbers. Everything runs through the TransformerLens bridge (``run_with_cache``).
"""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pandas as pd
import torch

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.interp.labels import future_path
from mazesearch.interp.lens import decode_cached, lens_hooks
from mazesearch.interp.probes import fit_logistic_multilabel, split_by_maze


def cell_of_token(vocab: Vocab, grid_n: int) -> np.ndarray:
    """Cell ``r*n + c`` named by every unary coordinate token of an n x n grid, else -1: ``int64 [V]``."""
    r, c = vocab.coord_row.astype(np.int64), vocab.coord_col.astype(np.int64)
    inside = (r >= 0) & (r < grid_n) & (c >= 0) & (c < grid_n)
    return np.where(inside, r * grid_n + c, -1)


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
    records, row = [], 0
    for i, (seq, q) in enumerate(zip(seqs, queries)):
        S = len(q)
        rows = slice(row, row + S)
        row += S
        key_cell = cell_of[seq]  # [T]
        on_cell = key_cell >= 0
        mass = np.zeros((S, L, H, cells))
        for s in range(S):  # attention mass per cell: sum over the keys naming it (keys up to the query)
            k = q[s] + 1
            for layer in range(L):
                for h in range(H):
                    w = attn[layer, row - S + s, h, :k]
                    mass[s, layer, h] = np.bincount(key_cell[:k][on_cell[:k]], weights=w[on_cell[:k]],
                                                    minlength=cells)
        lens_cells = np.zeros((S, L + 1, cells))
        lens_cells[:, :, cell_of[cell_token]] = lens[:, rows][:, :, cell_token].transpose(1, 0, 2)
        top = lens[:, rows].argmax(axis=-1)  # [L+1, S]
        top_p = np.take_along_axis(lens[:, rows], top[..., None], axis=-1)[..., 0]
        pred = np.asarray(predicted[i], dtype=np.int64)
        steps = [{"token": vocab.id_to_token[int(pred[s])] if s < len(pred) else "",
                  "cell": int(cell_of[pred[s]]) if s < len(pred) else -1,
                  "lens_top": [[vocab.id_to_token[int(top[layer, s])], round(float(top_p[layer, s]), 3)]
                               for layer in range(L + 1)]}
                 for s in range(S)]
        records.append({
            "maze_id": str(int(mazes.maze_id[i])), "n": n, "open": "".join(map(str, mazes.open[i].tolist())),
            "origin": int(mazes.origin[i]), "target": int(mazes.target[i]),
            "true_path": [int(c) for c in mazes.path(i)], "steps": steps,
            "attn": pack(mass), "lens": pack(lens_cells),
            "probe": pack(probe[:, rows].transpose(1, 0, 2)) if probes else None,
        })
    return records
