"""The activation cache: residual-stream vectors at the path positions of N mazes, on disk.

``extract_activations`` runs a model over the first N token sequences of a tokens file in
batches, keeps the vectors at the configured positions (``<TARGET_END>``, ``<PATH_START>``, every
path cell) and streams them, batch by batch, into one float16 ``.npy`` per layer plus a Parquet
index with one row per cached position. ``ActivationStore`` (activation_store.py) reads a cache back, memory-mapped.
The on-disk format is in docs/activations.md.

Two ways to compute the same activations (``backend``):

* ``"gpt"``: the hook-free training module, read at the residual stream (``GPT.residual_stream``:
  the embeddings entering block 0 and every block's output). Fast; tests/test_activations.py
  proves it equals the TransformerLens bridge's ``run_with_cache`` at the same hooks (relative 5e-5).
* ``"bridge"``: TransformerLens' ``run_with_cache(names_filter=...)``; any hook whose activation is
  shaped ``[batch, pos, ...]`` (``blocks.0.mlp.hook_post``, ``blocks.1.attn.hook_z``, ...).

``"auto"`` takes ``gpt`` when every requested layer is a residual-stream point, else ``bridge``.
The same activation under two names is stored once (see :func:`resolve_layers`).

This module imports transformer_lens only inside the bridge backend.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mazesearch.interp.activation_store import FORMAT, INDEX_FILE, META_FILE, ActivationStore
from mazesearch.io import atomic_dir, write_json_atomic
from mazesearch.model.gpt import GPT
from mazesearch.data.tokens import PATH_END, PATH_START, TARGET_END, TokenBatch, Vocab

KINDS = ("target_end", "path_start", "path")
DEFAULT_HOOKS = ("embed", "resid_post")
DEFAULT_POSITIONS = KINDS
BACKENDS = ("auto", "gpt", "bridge")
EMBED = "embed"  # the residual stream entering block 0 = hook_embed + hook_pos_embed
# Hooks whose second axis is not the position (heads come first): not cacheable per position.
_NOT_PER_POSITION = re.compile(r".*(hook_pattern|hook_attn_scores)$")

# ---------------------------------------------------------------------------- the index


def build_index(tokens: TokenBatch, vocab: Vocab, grid_n: int,
                positions: Sequence[str] = DEFAULT_POSITIONS) -> pd.DataFrame:
    """One row per cached position of every sequence in ``tokens``, ordered by (maze, position).

    Columns: ``row`` (int64, row in the layer arrays), ``maze_row`` (int64, row in the tokens /
    mazes file), ``maze_id`` (uint64), ``kind`` (``target_end`` | ``path_start`` | ``path``),
    ``path_step`` (int32: path cells emitted up to and including this token: 0 at the two
    specials, k+1 at path cell k), ``current_cell`` (int32: the path cell ``r*n+c`` of a ``path``
    row, -1 otherwise), ``token_pos`` (int32). With pair coordinates ``"(r," ",c)"`` a path cell's
    row sits at its second token, where the cell is complete.
    """
    kinds = check_positions(positions)
    flat, P = tokens.flat, tokens.prompt_len.astype(np.int64)
    starts, lengths = tokens.offsets[:-1], tokens.lengths
    B = len(tokens)
    for name, rel, tok in (("<TARGET_END>", starts + P - 2, TARGET_END),
                           ("<PATH_START>", starts + P - 1, PATH_START),
                           ("<PATH_END>", starts + lengths - 1, PATH_END)):
        bad = np.flatnonzero(flat[rel] != vocab.id(tok)) if B else []
        if len(bad):
            raise ValueError(f"sequence {bad[0]} does not have {name} where prompt_len says it should")
    n_path_tokens = lengths - P - 1
    first = flat[starts + P]  # first path token: tells unary "(r,c)" from pair "(r," ",c)"
    unary = vocab.coord_row[first] >= 0
    if B and not (unary.all() or (~unary).all()):
        raise ValueError("token file mixes unary and pair coordinates")
    width = 1 if (not B or unary[0]) else 2  # tokens per path cell
    if np.any(n_path_tokens < width) or np.any(n_path_tokens % width):
        raise ValueError(f"some path is not a whole number (>= 1) of {width}-token coordinates")
    n_cells = n_path_tokens // width
    maze_of = np.repeat(np.arange(B), n_cells)  # [cells] maze row of each path cell
    k = np.arange(len(maze_of)) - np.repeat(np.cumsum(n_cells) - n_cells, n_cells)
    cell_pos = P[maze_of] + width * k + (width - 1)
    last = flat[starts[maze_of] + cell_pos]
    if width == 1:
        r, c = vocab.coord_row[last], vocab.coord_col[last]
    else:
        r, c = vocab.pair_row[flat[starts[maze_of] + cell_pos - 1]], vocab.pair_col[last]
    outside = (r < 0) | (c < 0) | (r >= grid_n) | (c >= grid_n)
    if outside.any():
        bad = int(maze_of[np.flatnonzero(outside)[0]])
        raise ValueError(f"sequence {bad}: a path token is not a cell of a {grid_n}x{grid_n} grid")

    parts = []  # (maze_row, kind code, path_step, current_cell, token_pos)
    rows_all, minus1, zeros = np.arange(B), np.full(B, -1), np.zeros(B, np.int64)
    if "target_end" in kinds:
        parts.append((rows_all, np.full(B, 0), zeros, minus1, P - 2))
    if "path_start" in kinds:
        parts.append((rows_all, np.full(B, 1), zeros, minus1, P - 1))
    if "path" in kinds:
        parts.append((maze_of, np.full(len(maze_of), 2), k + 1, r * grid_n + c, cell_pos))
    maze_row, code, step, cell, pos = (np.concatenate(col) for col in zip(*parts))
    order = np.lexsort((pos, maze_row))
    maze_row = maze_row[order].astype(np.int64)
    return pd.DataFrame({
        "row": np.arange(len(order), dtype=np.int64),
        "maze_row": maze_row,
        "maze_id": tokens.maze_id[maze_row].astype(np.uint64),
        "kind": np.array(KINDS, dtype=object)[code[order]],
        "path_step": step[order].astype(np.int32),
        "current_cell": cell[order].astype(np.int32),
        "token_pos": pos[order].astype(np.int32),
    })


def check_positions(positions: Sequence[str]) -> list[str]:
    positions = list(positions)
    unknown = [p for p in positions if p not in KINDS]
    if not positions or unknown or len(set(positions)) != len(positions):
        raise ValueError(f"positions must be a non-empty list of distinct kinds from {KINDS}, got {positions}")
    return positions


# ---------------------------------------------------------------------------- layer names

_BLOCK_HOOK = re.compile(r"blocks\.(\d+)\.(.+)")
_EMBED_ALIASES = {"embed.hook_out": "hook_embed", "pos_embed.hook_out": "hook_pos_embed"}


def resolve_layers(hooks: Sequence[str], n_layers: int) -> tuple[list[str], dict[str, list[str]]]:
    """Requested hooks -> (canonical layer names in request order, aliases folded into each).

    Shorthands: ``embed`` (the residual stream entering block 0), ``resid_post`` / ``resid_pre``
    (that hook at every block). Explicit TL names are canonicalized where TL names one tensor
    twice (a block's input is the previous block's output; ln_final reads the last block's):
    ``blocks.0.hook_resid_pre``/``blocks.0.hook_in`` -> ``embed``;
    ``blocks.{i}.hook_resid_pre``/``hook_in`` -> ``blocks.{i-1}.hook_resid_post``;
    ``blocks.{i}.hook_out`` and (last block) ``ln_final.hook_in`` -> ``blocks.{i}.hook_resid_post``.
    Names the first batch shows to be one tensor are folded too (:func:`pick_once`).
    """
    if isinstance(hooks, str) or not list(hooks):
        raise ValueError(f"hooks must be a non-empty list of hook names, got {hooks!r}")
    layers: list[str] = []
    aliases: dict[str, list[str]] = {}
    for hook in hooks:
        names = {"resid_post": [f"blocks.{i}.hook_resid_post" for i in range(n_layers)],
                 "resid_pre": [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)]}.get(hook, [hook])
        for name in names:
            canon = _canonical_name(name, n_layers)
            if canon not in layers:
                layers.append(canon)
                aliases[canon] = []
            if name != canon and name not in aliases[canon]:
                aliases[canon].append(name)
    return layers, aliases


def _canonical_name(name: str, n_layers: int) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"hook name must be a non-empty string, got {name!r}")
    if name == "ln_final.hook_in":
        return f"blocks.{n_layers - 1}.hook_resid_post"
    if name in _EMBED_ALIASES:
        return _EMBED_ALIASES[name]
    m = _BLOCK_HOOK.fullmatch(name)
    if m:
        layer, rest = int(m[1]), m[2]
        if layer >= n_layers:
            raise ValueError(f"hook {name!r}: the model has only {n_layers} blocks")
        if rest in ("hook_resid_pre", "hook_in"):
            return EMBED if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"
        if rest == "hook_out":
            return f"blocks.{layer}.hook_resid_post"
    if _NOT_PER_POSITION.fullmatch(name):
        raise ValueError(f"hook {name!r} is [batch, head, pos, pos]: only [batch, pos, ...] hooks "
                         "can be cached per position")
    return name


def _residual_depth(layer: str) -> int | None:
    """0 for ``embed``, i+1 for ``blocks.{i}.hook_resid_post``, None for other layers."""
    if layer == EMBED:
        return 0
    m = _BLOCK_HOOK.fullmatch(layer)
    return int(m[1]) + 1 if m and m[2] == "hook_resid_post" else None


# ---------------------------------------------------------------------------- backends

# A runner maps tokens [batch, pos] to {layer: picked rows [rows, ...]}, calling pick(layer, act)
# on each activation [batch, pos, ...] as soon as it exists (so the full tensors can be freed).
# Names of one activation get the very same picked tensor object.
Pick = Callable[[str, torch.Tensor], torch.Tensor]
Runner = Callable[[torch.Tensor, Pick], dict[str, torch.Tensor]]


def gpt_runner(model: GPT, layers: Sequence[str]) -> Runner:
    depth_of = {layer: _residual_depth(layer) for layer in layers}
    if None in depth_of.values():
        need = [layer for layer, d in depth_of.items() if d is None]
        raise ValueError(f"backend 'gpt' reads only the residual stream; {need} need backend 'bridge'")
    layer_at = {d: layer for layer, d in depth_of.items()}  # canonical names: one layer per depth

    def run(tokens: torch.Tensor, pick: Pick) -> dict[str, torch.Tensor]:
        picked = {}
        for d, resid in enumerate(model.residual_stream(tokens, max(layer_at))):
            if d in layer_at:
                picked[layer_at[d]] = pick(layer_at[d], resid)
        return {layer: picked[layer] for layer in layers}

    return run


def bridge_runner(model: GPT, layers: Sequence[str]) -> Runner:
    """``run_with_cache(names_filter=...)`` on the model's TransformerLens bridge."""
    from mazesearch.interp.bridge import to_bridge  # imports transformer_lens: slow, analysis only

    bridge = to_bridge(model)
    read = {layer: ("blocks.0.hook_resid_pre" if layer == EMBED else layer) for layer in layers}
    unknown = [name for name in read.values() if name not in bridge.hook_dict]
    if unknown:
        raise ValueError(f"unknown TransformerLens hooks {unknown}; e.g. {sorted(bridge.hook_dict)[:6]}")

    def run(tokens: torch.Tensor, pick: Pick) -> dict[str, torch.Tensor]:
        _, cache = bridge.run_with_cache(tokens, names_filter=list(read.values()))
        return pick_once({layer: cache[name] for layer, name in read.items()}, pick)

    return run


def pick_once(acts: dict[str, torch.Tensor], pick: Pick) -> dict[str, torch.Tensor]:
    """Pick every activation's rows; names of one tensor share one picked tensor object.

    "One tensor" = same storage, shape and strides: one activation under two names (TL caches
    e.g. ``blocks.0.ln1.hook_in`` and ``blocks.0.hook_resid_pre`` as one tensor). Identity rather
    than value equality, so two activations that merely happen to be equal are never merged.
    """
    seen: dict[tuple, torch.Tensor] = {}
    picked = {}
    for name, t in acts.items():
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if key not in seen:
            seen[key] = pick(name, t)
        picked[name] = seen[key]
    return picked


# ---------------------------------------------------------------------------- writing


class NpyAppender:
    """A ``.npy`` file of known shape ``[n_rows, width]`` float16, written by appending rows.

    Rows go straight to the file (nothing is buffered here), so the extractor's memory is one
    batch however many rows the cache holds; plain writes, not a memmap, keep the written pages
    out of the process's resident set.
    """

    def __init__(self, path: Path, n_rows: int, width: int):
        self.path, self.n_rows, self.width, self.rows_written = path, n_rows, width, 0
        self._file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                  "fortran_order": False, "shape": (n_rows, width)}
        np.lib.format.write_array_header_1_0(self._file, header)

    def append(self, rows: np.ndarray) -> None:  # [r, width] float16
        if rows.dtype != np.float16 or rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"{self.path.name}: expected float16 [r, {self.width}], got {rows.dtype} {rows.shape}")
        if self.rows_written + len(rows) > self.n_rows:
            raise ValueError(f"{self.path.name}: more than the {self.n_rows} rows announced")
        self._file.write(np.ascontiguousarray(rows).tobytes())
        self.rows_written += len(rows)

    def close(self) -> None:
        self._file.close()

    def check_complete(self) -> None:
        if self.rows_written != self.n_rows:
            raise ValueError(f"{self.path.name}: wrote {self.rows_written} of {self.n_rows} rows")


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the parameters (sorted names, float32 bytes): which weights made a cache."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def extract_activations(model: GPT, tokens: TokenBatch, vocab: Vocab, grid_n: int, out_dir: str | Path, *,
                        n_mazes: int | None = None, batch_size: int = 128,
                        hooks: Sequence[str] = DEFAULT_HOOKS, positions: Sequence[str] = DEFAULT_POSITIONS,
                        backend: str = "auto", meta: dict | None = None) -> "ActivationStore":
    """Cache ``model``'s activations over the first ``n_mazes`` sequences into ``out_dir``.

    Builds everything in ``<out_dir>.tmp`` and renames it over ``out_dir`` at the end: on any
    error ``out_dir`` is left as it was. ``meta`` entries (dataset name, model role) are added to
    meta.json. Runs where the model's parameters live. Same inputs -> byte-identical files.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n_mazes = len(tokens) if n_mazes is None else n_mazes
    if not 1 <= n_mazes <= len(tokens):
        raise ValueError(f"n_mazes={n_mazes} must be in 1..{len(tokens)} (sequences in the token file)")
    cfg = model.cfg
    if len(vocab) > cfg.d_vocab:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model only {cfg.d_vocab}")
    tokens = tokens.take(np.arange(n_mazes))
    index = build_index(tokens, vocab, grid_n, positions)
    longest = int(index["token_pos"].max()) + 1
    if longest > cfg.n_ctx:
        raise ValueError(f"cached positions reach token {longest - 1} but the model's n_ctx is {cfg.n_ctx}")
    layers, aliases = resolve_layers(hooks, cfg.n_layers)
    if backend == "auto":
        backend = "gpt" if all(_residual_depth(l) is not None for l in layers) else "bridge"
    run = gpt_runner(model, layers) if backend == "gpt" else bridge_runner(model, layers)

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        widths = _stream_layers(run, model, tokens, index, layers, aliases, batch_size, vocab.pad_id, tmp)
        layers = list(widths)
        pq.write_table(pa.Table.from_pandas(index, preserve_index=False), tmp / INDEX_FILE,
                       compression="zstd", write_statistics=False)
        doc = {
            **(meta or {}), "format": FORMAT, "n_mazes": n_mazes, "n_rows": len(index), "grid_n": grid_n,
            "positions": list(positions), "hooks": list(hooks), "backend": backend, "dtype": "float16",
            "batch_size": batch_size, "model_config": cfg.to_dict(), "weights_sha256": weights_digest(model),
            "layers": [{"name": l, "file": f"{l}.npy", "width": widths[l], "aliases": aliases[l]} for l in layers],
            "rows_per_kind": {k: int((index["kind"] == k).sum()) for k in positions},
        }
        write_json_atomic(tmp / META_FILE, doc, sort_keys=True)
    return ActivationStore(out_dir)


def _stream_layers(run: Runner, model: GPT, tokens: TokenBatch, index: pd.DataFrame, layers: list[str],
                   aliases: dict[str, list[str]], batch_size: int, pad_id: int, out: Path) -> dict[str, int]:
    """Run batch by batch, appending each batch's picked rows to ``out/<layer>.npy``.

    Layers that turn out to be one tensor under two names (first batch) are folded into
    ``aliases`` (updated in place). Returns ``{layer: width}`` for the layers written.
    """
    n_mazes = len(tokens)
    maze_rows = index["maze_row"].to_numpy()
    n_batches = -(-n_mazes // batch_size)
    bounds = np.searchsorted(maze_rows, np.arange(n_batches + 1) * batch_size)  # index rows per batch
    device = next(model.parameters()).device
    writers: dict[str, NpyAppender] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in range(n_batches):
                start = b * batch_size
                rows = index.iloc[bounds[b] : bounds[b + 1]]
                length = int(rows["token_pos"].max()) + 1  # causal: later tokens never matter
                batch = tokens.take(np.arange(start, min(start + batch_size, n_mazes)))
                ids = torch.from_numpy(batch.padded(pad_id, dtype=np.int64)[:, :length]).to(device)
                bi = torch.from_numpy(rows["maze_row"].to_numpy() - start).to(device)
                pi = torch.from_numpy(rows["token_pos"].to_numpy().astype(np.int64)).to(device)

                def pick(layer: str, act: torch.Tensor) -> torch.Tensor:  # [batch, pos, ...] -> [rows, ...]
                    if act.ndim < 3 or act.shape[:2] != ids.shape:
                        raise ValueError(f"hook {layer!r} has shape {list(act.shape)}, not [batch, pos, ...]")
                    return act[bi, pi]

                picked = run(ids, pick)
                if b == 0:  # fold names of one activation, then open one file per layer
                    for j, later in enumerate(layers):
                        earlier = next((e for e in layers[:j] if e in aliases and picked[e] is picked[later]), None)
                        if earlier is not None:
                            aliases[earlier] += [later] + aliases.pop(later)
                    for layer in (l for l in layers if l in aliases):
                        width = int(np.prod(picked[layer].shape[1:]))
                        writers[layer] = NpyAppender(out / f"{layer}.npy", len(index), width)
                for layer, writer in writers.items():
                    writer.append(picked[layer].reshape(len(rows), -1).to("cpu", torch.float16).numpy())
        for writer in writers.values():
            writer.check_complete()
    finally:
        model.train(was_training)
        for writer in writers.values():
            writer.close()
    return {layer: writer.width for layer, writer in writers.items()}
