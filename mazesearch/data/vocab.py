"""The token vocabulary: fixed by ``max_grid_n`` alone (docs/tokens.md).

Every tokenizer option shares it, and a model trained on small grids can read larger ones (up to
``max_grid_n``). Ids: the special tokens first (maze-dataset's order, then ours), then one
"shell" per k = 0..max_grid_n-1: the unary coordinates with max(r, c) = k in row-major order,
then the pair tokens ``"(k,"`` and ``",k)"``. So the vocabulary of a smaller ``max_grid_n`` is a
prefix of a larger one's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from mazesearch.io import InputError, read_json, write_text_atomic

ADJLIST_START, ADJLIST_END = "<ADJLIST_START>", "<ADJLIST_END>"
TARGET_START, TARGET_END = "<TARGET_START>", "<TARGET_END>"
ORIGIN_START, ORIGIN_END = "<ORIGIN_START>", "<ORIGIN_END>"
PATH_START, PATH_END = "<PATH_START>", "<PATH_END>"
CONNECTOR, SEPARATOR, PAD = "<-->", ";", "<PADDING>"
WALLS_START, WALLS_END, WALL_CONNECTOR = "<WALLS_START>", "<WALLS_END>", "<-X->"

# The first 11 are maze-dataset's special tokens in maze-dataset's id order; ours follow.
SPECIAL_TOKENS = (
    ADJLIST_START, ADJLIST_END, TARGET_START, TARGET_END, ORIGIN_START, ORIGIN_END,
    PATH_START, PATH_END, CONNECTOR, SEPARATOR, PAD,
    WALLS_START, WALLS_END, WALL_CONNECTOR,
)
MAX_VOCAB_GRID_N = 255  # keeps every id inside uint16
VOCAB_FORMAT = "mazesearch.vocab/1"  # the "format" of vocab.json

_UNARY = re.compile(r"\((\d+),(\d+)\)")
_PAIR_ROW = re.compile(r"\((\d+),")
_PAIR_COL = re.compile(r",(\d+)\)")


def _check_grid_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_VOCAB_GRID_N:
        raise ValueError(f"max_grid_n must be an integer in 1..{MAX_VOCAB_GRID_N}, got {n!r}")
    return int(n)


def _vocab_tokens(max_grid_n: int) -> tuple[str, ...]:
    tokens = list(SPECIAL_TOKENS)
    for k in range(max_grid_n):
        shell = [(r, k) for r in range(k)] + [(k, c) for c in range(k + 1)]  # row-major
        tokens += [f"({r},{c})" for r, c in shell]
        tokens += [f"({k},", f",{k})"]
    return tuple(tokens)


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token strings and their ids (``id_to_token[i]`` is the string of id i).

    Lookup arrays (all ``int32 [V]``, -1 where not applicable) serve evaluation:
    ``coord_row`` / ``coord_col`` give the (row, col) of unary coordinate tokens ``"(r,c)"``;
    ``pair_row`` is r for ``"(r,"`` tokens and ``pair_col`` is c for ``",c)"`` tokens.
    ``unary_id [max_grid_n, max_grid_n]``, ``pair_row_id`` / ``pair_col_id [max_grid_n]`` go
    the other way.
    """

    max_grid_n: int
    id_to_token: tuple[str, ...]
    token_to_id: dict[str, int] = dataclasses.field(init=False, compare=False, repr=False)
    coord_row: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)
    coord_col: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)
    pair_row: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)
    pair_col: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)
    unary_id: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)
    pair_row_id: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)
    pair_col_id: np.ndarray = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = _check_grid_n(self.max_grid_n)
        tokens = tuple(self.id_to_token)
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"vocabulary has duplicate tokens {[t for t, k in Counter(tokens).items() if k > 1][:5]}")
        expected = set(_vocab_tokens(n))
        if set(tokens) != expected:
            missing, extra = sorted(expected - set(tokens)), sorted(set(tokens) - expected)
            raise ValueError(f"vocabulary does not match max_grid_n={n}: missing {missing[:5]}, unexpected {extra[:5]}")
        V = len(tokens)
        row, col, prow, pcol = (np.full(V, -1, dtype=np.int32) for _ in range(4))
        for i, tok in enumerate(tokens):
            if m := _UNARY.fullmatch(tok):
                row[i], col[i] = int(m[1]), int(m[2])
            elif m := _PAIR_ROW.fullmatch(tok):
                prow[i] = int(m[1])
            elif m := _PAIR_COL.fullmatch(tok):
                pcol[i] = int(m[1])
        ids = np.arange(V, dtype=np.int32)
        unary_id = np.full((n, n), -1, dtype=np.int32)
        unary_id[row[row >= 0], col[row >= 0]] = ids[row >= 0]
        pair_row_id, pair_col_id = np.full(n, -1, dtype=np.int32), np.full(n, -1, dtype=np.int32)
        pair_row_id[prow[prow >= 0]], pair_col_id[pcol[pcol >= 0]] = ids[prow >= 0], ids[pcol >= 0]
        derived = dict(coord_row=row, coord_col=col, pair_row=prow, pair_col=pcol, unary_id=unary_id,
                       pair_row_id=pair_row_id, pair_col_id=pair_col_id)
        for name, table in derived.items():
            table.flags.writeable = False
            object.__setattr__(self, name, table)  # frozen dataclass: set once, here
        object.__setattr__(self, "max_grid_n", n)
        object.__setattr__(self, "id_to_token", tokens)
        object.__setattr__(self, "token_to_id", {t: i for i, t in enumerate(tokens)})

    @staticmethod
    def build(max_grid_n: int) -> "Vocab":
        """The vocabulary for grids up to ``max_grid_n`` x ``max_grid_n`` (layout: module doc)."""
        return Vocab(max_grid_n, _vocab_tokens(_check_grid_n(max_grid_n)))

    def __len__(self) -> int:
        return len(self.id_to_token)

    def id(self, token: str) -> int:
        try:
            return self.token_to_id[token]
        except KeyError:
            raise ValueError(f"token {token!r} is not in the vocabulary (max_grid_n={self.max_grid_n})") from None

    @property
    def pad_id(self) -> int:
        return self.token_to_id[PAD]

    def to_json(self, path: str | Path) -> None:
        """Write ``{"max_grid_n", "tokens"}`` (tokens listed by id) atomically."""
        doc = {"format": VOCAB_FORMAT, "max_grid_n": self.max_grid_n,
               "n_tokens": len(self), "tokens": list(self.id_to_token)}
        write_text_atomic(path, json.dumps(doc, indent=1) + "\n")

    @staticmethod
    def from_json(path: str | Path) -> "Vocab":
        """A vocabulary written by :meth:`to_json`; :class:`InputError` naming the file when it is
        missing, not JSON, not this format, or its tokens are not exactly those of its max_grid_n
        in id order (``n_tokens``, when present, must be their number)."""
        path = Path(path)
        hint = "rebuild it with `dvc repro vocab`"
        doc = read_json(path, "vocabulary file", hint)
        if not isinstance(doc, dict) or "max_grid_n" not in doc or "tokens" not in doc:
            raise InputError(path, "is not a mazesearch vocabulary (needs an object with max_grid_n and tokens)", hint)
        if doc.get("format", VOCAB_FORMAT) != VOCAB_FORMAT:
            raise InputError(path, f"vocabulary format {doc['format']!r} is not {VOCAB_FORMAT!r}", hint)
        n, tokens = doc["max_grid_n"], doc["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InputError(path, "vocabulary 'tokens' must be a list of strings", hint)
        try:
            vocab = Vocab(n, tuple(tokens))
        except ValueError as exc:  # wrong max_grid_n, tokens missing, duplicated or unexpected
            raise InputError(path, f"is not a valid vocabulary ({exc})", hint) from None
        if "n_tokens" in doc and doc["n_tokens"] != len(tokens):
            raise InputError(path, f"vocabulary says n_tokens={doc['n_tokens']!r} but lists {len(tokens)} tokens", hint)
        if vocab.id_to_token != _vocab_tokens(vocab.max_grid_n):
            raise InputError(path, f"vocabulary tokens are not in the id order of max_grid_n={vocab.max_grid_n}", hint)
        return vocab
