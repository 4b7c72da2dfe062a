"""Mazes as token sequences: the encoder and the tokens Parquet file (vocabulary: vocab.py).

The default text is exactly maze-dataset's AOTP_UT format (docs/tokens.md has every option)::

    <ADJLIST_START> (0,0) <--> (0,1) ; (1,1) <--> (1,0) ; ... <ADJLIST_END>
    <ORIGIN_START> (0,0) <ORIGIN_END> <TARGET_START> (1,1) <TARGET_END>
    <PATH_START> (0,0) (0,1) (1,1) <PATH_END>

The vocabulary depends on ``max_grid_n`` alone, so every option combination shares it and a
model trained on small grids can read larger ones (up to ``max_grid_n``). Ids: the special
tokens first (maze-dataset's order, then ours), then one "shell" per k = 0..max_grid_n-1: the
unary coordinates with max(r, c) = k in row-major order, then the pair tokens ``"(k,"`` and
``",k)"``. So the vocabulary of a smaller ``max_grid_n`` is a prefix of a larger one's.

The per-maze edge shuffle is a splitmix64 stream keyed by ``(seed, maze_id)`` only: a maze gets
the same sequence in whatever batch, file or position it is tokenized.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from mazesearch.data.jit import njit
from mazesearch.data.maze import MazeBatch, edge_endpoints, n_edges, read_parquet, write_parquet_atomic
from mazesearch.data.rng import splitmix64
from mazesearch.data.vocab import (  # noqa: F401  (token names: tokens' public vocabulary too)
    ADJLIST_START, ADJLIST_END, TARGET_START, TARGET_END, ORIGIN_START, ORIGIN_END, PATH_START, PATH_END, CONNECTOR, SEPARATOR, PAD, WALLS_START, WALLS_END, WALL_CONNECTOR, SPECIAL_TOKENS, MAX_VOCAB_GRID_N, VOCAB_FORMAT, Vocab,
)
from mazesearch.io import InputError

# ---------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class TokenizerOptions:
    """How a maze becomes text (params ``tokenizer.*``; docs/tokens.md shows each option)."""

    coord: Literal["unary", "pair"] = "unary"  # "(r,c)" as one token, or "(r," ",c)" as two
    edges: Literal["adjlist", "walls"] = "adjlist"  # list the connections, or the walls
    edge_order: Literal["shuffled", "sorted"] = "shuffled"  # seeded shuffle, or canonical order
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("coord", ("unary", "pair")), ("edges", ("adjlist", "walls")),
                              ("edge_order", ("shuffled", "sorted"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"tokenizer option {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**64:
            raise ValueError(f"tokenizer option seed must be an integer in 0..2**64-1, got {self.seed!r}")


def sequence_lengths(n_listed: np.ndarray, path_cells: np.ndarray, coord: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt_len, total length) for mazes with ``n_listed`` edges and ``path_cells`` path cells."""
    w = 2 if coord == "pair" else 1  # tokens per coordinate
    prompt = 1 + n_listed * (2 * w + 2) + 1 + 2 * (w + 2) + 1
    return prompt, prompt + path_cells * w + 1


def max_sequence_length(grid_n: int, opts: TokenizerOptions) -> int:
    """The longest sequence any ``grid_n`` maze can give under ``opts`` (all edges listed)."""
    _, total = sequence_lengths(np.int64(n_edges(grid_n)), np.int64(grid_n * grid_n), opts.coord)
    return int(total)


# ---------------------------------------------------------------------------- encoder


_U64 = np.uint64


@njit
def _put_coord(out, pos, cell, pair, cell_a, cell_b):
    """Write one cell's coordinate token(s) at ``pos``; return the next free position."""
    out[pos] = cell_a[cell]
    if pair:
        out[pos + 1] = cell_b[cell]
        return pos + 2
    return pos + 1


@njit
def _encode_kernel(open_, ends, origin, target, path_flat, path_offsets, maze_id, seed_key,
                   walls, shuffled, pair, cell_a, cell_b, specials, offsets, out, prompt_len):
    """Fill ``out`` (uint16 [sum]) with every maze's tokens at ``offsets``.

    ``cell_a[cell]`` is the cell's unary id (or its ``"(r,"`` id in pair mode) and ``cell_b``
    the ``",c)"`` id; ``specials`` holds, in order: list start, list end, connector, separator,
    origin start/end, target start/end, path start/end.
    """
    B, E = open_.shape
    listed = np.empty(E, dtype=np.int64)
    for i in range(B):
        m = 0
        for e in range(E):
            if (open_[i, e] != 0) != walls:
                listed[m] = e
                m += 1
        state = seed_key ^ maze_id[i]
        if shuffled:  # Fisher-Yates from the maze's own stream
            for k in range(m - 1, 0, -1):
                state, bits = splitmix64(state)
                j = np.int64(bits % _U64(k + 1))
                listed[k], listed[j] = listed[j], listed[k]
        pos = offsets[i]
        out[pos] = specials[0]
        pos += 1
        for k in range(m):
            a, b = ends[listed[k], 0], ends[listed[k], 1]
            if shuffled:
                state, bits = splitmix64(state)
                if bits >> _U64(63):
                    a, b = b, a
            pos = _put_coord(out, pos, a, pair, cell_a, cell_b)
            out[pos] = specials[2]
            pos = _put_coord(out, pos + 1, b, pair, cell_a, cell_b)
            out[pos] = specials[3]
            pos += 1
        out[pos] = specials[1]
        out[pos + 1] = specials[4]
        pos = _put_coord(out, pos + 2, origin[i], pair, cell_a, cell_b)
        out[pos] = specials[5]
        out[pos + 1] = specials[6]
        pos = _put_coord(out, pos + 2, target[i], pair, cell_a, cell_b)
        out[pos] = specials[7]
        out[pos + 1] = specials[8]
        pos += 2
        prompt_len[i] = pos - offsets[i]
        for p in range(path_offsets[i], path_offsets[i + 1]):
            pos = _put_coord(out, pos, path_flat[p], pair, cell_a, cell_b)
        out[pos] = specials[9]


def encode_arrays(grid_n: int, open_: np.ndarray, origin: np.ndarray, target: np.ndarray,
                  path_flat: np.ndarray, path_offsets: np.ndarray, maze_id: np.ndarray,
                  vocab: Vocab, opts: TokenizerOptions) -> "TokenBatch":
    """:func:`encode` on plain arrays (shapes as in :class:`~mazesearch.data.maze.MazeBatch`)."""
    n = int(grid_n)
    if n > vocab.max_grid_n:
        raise ValueError(f"grid_n={n} exceeds the vocabulary's max_grid_n={vocab.max_grid_n}")
    E, cells = n_edges(n), n * n
    open_ = np.ascontiguousarray(open_, dtype=np.uint8)
    B = len(origin)
    if open_.ndim != 2 or open_.shape != (B, E):
        raise ValueError(f"open must have shape [B={B}, E={E}] for grid_n={n}, got {open_.shape}")
    if B and open_.max(initial=0) > 1:
        raise ValueError("open must hold only 0 (wall) and 1 (connection)")
    origin, target = np.asarray(origin, dtype=np.int64), np.asarray(target, dtype=np.int64)
    path_flat, path_offsets = np.asarray(path_flat, dtype=np.int64), np.asarray(path_offsets, dtype=np.int64)
    maze_id = np.ascontiguousarray(maze_id, dtype=np.uint64)
    if target.shape != (B,) or maze_id.shape != (B,):
        raise ValueError(f"origin, target and maze_id must all have shape [{B}]")
    if path_offsets.shape != (B + 1,) or path_offsets[0] != 0 or path_offsets[-1] != len(path_flat) \
            or np.any(np.diff(path_offsets) < 0):
        raise ValueError("path_offsets must be [B+1], start at 0, never decrease and end at len(path_flat)")
    for name, values in (("origin", origin), ("target", target), ("path", path_flat)):
        if len(values) and (values.min() < 0 or values.max() >= cells):
            raise ValueError(f"{name} holds cells outside 0..{cells - 1} of a {n}x{n} grid")
    n_open = open_.sum(axis=1, dtype=np.int64)
    n_listed = E - n_open if opts.edges == "walls" else n_open
    prompt, total = sequence_lengths(n_listed, np.diff(path_offsets), opts.coord)
    offsets = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(total, out=offsets[1:])
    flat = np.empty(offsets[-1], dtype=np.uint16)
    prompt_len = np.empty(B, dtype=np.int32)
    rows, cols = np.divmod(np.arange(cells), n)
    if opts.coord == "pair":
        cell_a, cell_b = vocab.pair_row_id[rows], vocab.pair_col_id[cols]
    else:
        cell_a, cell_b = vocab.unary_id[rows, cols], np.zeros(cells, dtype=np.int32)
    walls = opts.edges == "walls"
    specials = np.array([vocab.id(t) for t in (
        WALLS_START if walls else ADJLIST_START, WALLS_END if walls else ADJLIST_END,
        WALL_CONNECTOR if walls else CONNECTOR, SEPARATOR, ORIGIN_START, ORIGIN_END,
        TARGET_START, TARGET_END, PATH_START, PATH_END)], dtype=np.uint16)
    _, seed_key = splitmix64(_U64(opts.seed))  # decorrelates seed from maze_id before the xor
    _encode_kernel(open_, edge_endpoints(n), origin, target, path_flat, path_offsets, maze_id,
                   _U64(seed_key), walls, opts.edge_order == "shuffled", opts.coord == "pair",
                   cell_a.astype(np.uint16), cell_b.astype(np.uint16), specials, offsets, flat, prompt_len)
    assert np.array_equal(prompt_len, prompt)  # the kernel and the length formula agree
    return TokenBatch(maze_id=maze_id.copy(), flat=flat, offsets=offsets, prompt_len=prompt_len)


def encode(batch: MazeBatch, vocab: Vocab, opts: TokenizerOptions = TokenizerOptions()) -> "TokenBatch":
    """Token sequences of every maze in ``batch``: maze, origin, target, then its stored path."""
    return encode_arrays(batch.grid_n, batch.open, batch.origin, batch.target, batch.path_flat,
                         batch.path_offsets, batch.maze_id, vocab, opts)


# ---------------------------------------------------------------------------- token batches


@dataclasses.dataclass
class TokenBatch:
    """B token sequences, ragged: sequence i is ``flat[offsets[i]:offsets[i+1]]``."""

    maze_id: np.ndarray  # uint64 [B]
    flat: np.ndarray  # uint16 [sum(lengths)]
    offsets: np.ndarray  # int64 [B+1], offsets[0] == 0
    prompt_len: np.ndarray  # int32 [B]: tokens up to and including <PATH_START>

    def __len__(self) -> int:
        return int(self.maze_id.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """Tokens in each sequence: ``int64 [B]``."""
        return np.diff(self.offsets)

    def tokens(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def prompt(self, i: int) -> np.ndarray:
        """What the model sees at evaluation time: maze, origin, target, ``<PATH_START>``."""
        return self.flat[self.offsets[i] : self.offsets[i] + self.prompt_len[i]]

    def take(self, idx: np.ndarray) -> "TokenBatch":
        """Sub-batch of the given rows (order kept)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # position j of new row k reads flat[old_start[k] + j]
        starts = np.repeat(self.offsets[idx] - offsets[:-1], lengths)
        gather = starts + np.arange(offsets[-1])
        return TokenBatch(self.maze_id[idx], self.flat[gather], offsets, self.prompt_len[idx])

    def padded(self, pad_id: int, length: int | None = None, dtype=np.uint16) -> np.ndarray:
        """All sequences right-padded with ``pad_id``: ``[B, length]`` (default: the longest)."""
        lengths = self.lengths
        longest = int(lengths.max(initial=0))
        T = longest if length is None else int(length)
        if T < longest:
            raise ValueError(f"length={T} is shorter than the longest sequence ({longest} tokens)")
        out = np.full((len(self), T), pad_id, dtype=dtype)
        out[np.arange(T)[None, :] < lengths[:, None]] = self.flat[: self.offsets[-1]]  # row-major = flat order
        return out

    def to_arrow(self) -> pa.Table:
        if self.offsets[-1] >= 2**31:
            raise ValueError(f"{self.offsets[-1]} tokens do not fit one Arrow list column (< 2**31)")
        tokens = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)),
                                          pa.array(self.flat.astype(np.uint16)))
        return pa.table({"maze_id": pa.array(self.maze_id.astype(np.uint64)),
                         "tokens": tokens,
                         "prompt_len": pa.array(self.prompt_len.astype(np.int32))})

    @staticmethod
    def from_arrow(table: pa.Table) -> "TokenBatch":
        missing = {"maze_id", "tokens", "prompt_len"} - set(table.column_names)
        if missing:
            raise ValueError(f"token table lacks columns {sorted(missing)}")
        if table.schema.field("tokens").type != pa.list_(pa.uint16()):
            raise ValueError(f"token table column 'tokens' must be list<uint16>, got {table.schema.field('tokens').type}")
        table = table.combine_chunks()
        if table.num_rows:
            lists = table["tokens"].chunk(0)
            raw = lists.offsets.to_numpy().astype(np.int64)
            flat = lists.values.to_numpy(zero_copy_only=False)[raw[0] : raw[-1]]
            offsets = raw - raw[0]
        else:
            flat, offsets = np.zeros(0, dtype=np.uint16), np.zeros(1, dtype=np.int64)
        prompt_len = table["prompt_len"].to_numpy().astype(np.int32)
        if np.any(prompt_len < 1) or np.any(prompt_len >= np.diff(offsets)):
            raise ValueError("token table has prompt_len outside 1..len(tokens)-1")
        return TokenBatch(maze_id=table["maze_id"].to_numpy().astype(np.uint64),
                          flat=np.ascontiguousarray(flat, dtype=np.uint16), offsets=offsets,
                          prompt_len=prompt_len)


def write_tokens(tb: TokenBatch, path: str | Path) -> None:
    write_parquet_atomic(tb.to_arrow(), path)


def read_tokens(path: str | Path, vocab: Vocab | None = None) -> TokenBatch:
    """The sequences of a file written by :func:`write_tokens`, or :class:`InputError` naming it
    (missing, not Parquet, wrong columns, nulls, ``prompt_len`` outside its sequence).

    With ``vocab``, also every id must be < ``len(vocab)``, every prompt must end in
    ``<PATH_START>`` and every sequence in ``<PATH_END>`` (vectorized: ~1 ns per token).
    """
    hint = "re-run `dvc repro tokenize`"
    table = read_parquet(path, "token file")
    for name in ("maze_id", "prompt_len"):
        if name in table.column_names and not pa.types.is_integer(table.schema.field(name).type):
            raise InputError(path, f"token file column {name!r} must be integers, got {table.schema.field(name).type}", hint)
    if "tokens" in table.column_names and table.schema.field("tokens").type != pa.list_(pa.uint16()):
        raise InputError(path, f"token file column 'tokens' must be list<uint16>, got {table.schema.field('tokens').type}", hint)
    nulls = [name for name in ("maze_id", "tokens", "prompt_len") if name in table.column_names
             and (table[name].null_count or (name == "tokens" and any(c.values.null_count for c in table[name].chunks)))]
    if nulls:
        raise InputError(path, f"token file has null values in columns {nulls}", hint)
    try:
        tb = TokenBatch.from_arrow(table)
    except (KeyError, ValueError, TypeError, pa.ArrowException) as exc:
        raise InputError(path, f"token file does not hold token sequences ({exc})", hint) from None
    if vocab is not None and len(tb):
        V = len(vocab)
        if int(tb.flat.max(initial=0)) >= V:
            pos = int(np.argmax(tb.flat >= V))
            row = int(np.searchsorted(tb.offsets, pos, side="right") - 1)
            raise InputError(path, f"token file row {row} holds id {int(tb.flat[pos])}, outside a vocabulary of {V} "
                             "tokens", "re-run `dvc repro vocab tokenize` so both come from the same max_grid_n")
        for what, where, token in (("prompt does not end in", tb.offsets[:-1] + tb.prompt_len - 1, PATH_START),
                                   ("sequence does not end in", tb.offsets[1:] - 1, PATH_END)):
            bad = np.flatnonzero(tb.flat[where] != vocab.token_to_id[token])
            if len(bad):
                raise InputError(path, f"token file row {int(bad[0])}: {what} {token}", hint)
    return tb


# ---------------------------------------------------------------------------- text


def to_text(ids, vocab: Vocab) -> str:
    """Space-joined token strings (maze-dataset's text form in the default options)."""
    ids = np.asarray(ids).ravel()
    bad = np.flatnonzero((ids < 0) | (ids >= len(vocab)))
    if len(bad):
        raise ValueError(f"position {bad[0]}: id {ids[bad[0]]} is outside the vocabulary (0..{len(vocab) - 1})")
    return " ".join(vocab.id_to_token[i] for i in ids.tolist())


def from_text(text: str, vocab: Vocab) -> np.ndarray:
    """Ids of whitespace-separated tokens: ``uint16 [T]``."""
    ids = []
    for pos, tok in enumerate(text.split()):
        i = vocab.token_to_id.get(tok)
        if i is None:
            raise ValueError(f"position {pos}: token {tok!r} is not in the vocabulary (max_grid_n={vocab.max_grid_n})")
        ids.append(i)
    return np.array(ids, dtype=np.uint16)


# decode lives in mazesearch/data/decode.py; these names are re-exported lazily (no import cycle).
_DECODE_NAMES = ("decode", "decode_path", "DecodedMaze", "TokenDecodeError")


def __getattr__(name: str):
    if name in _DECODE_NAMES:
        from mazesearch.data import decode as _decode
        return getattr(_decode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
