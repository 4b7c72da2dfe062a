"""Counterfactual pairs: test mazes beside minimally edited twins whose shortest path leaves the
original path at one decision, for activation patching and steering.

A pair is (clean, corrupt). Both mazes keep the origin and have a unique shortest path; the two
paths share the cells ``path[:k+1]`` (``k = decision_step``) and then step to different cells
(``clean_next != corrupt_next``). Source mazes are spanning trees. Kinds:

* ``target_move``: same walls, another target t' whose path branches off the old one at k.
* ``wall_move``: at a decision point k of the path, close the edge (path[k], path[k+1]) and open
  one wall joining the two halves such that the new path still runs through path[:k+1]: a tree.
* ``edge_add``: open one wall (the maze gains one cycle) that gives a shorter, unique path.
* ``edge_remove``: an ``edge_add`` pair of its own random draw, read backwards (clean = cyclic).

``path[k]`` is a decision point (>= 2 open neighbours other than path[k-1]) of the clean maze, and
of the corrupt maze for edge_add (the cyclic one, where both next cells are open).

Token alignment. A tree's tokens are its row of the input tokens; the edited sequence is that
sequence edited in place, keeping the edge order the model saw: target_move overwrites the
target coordinate, wall_move overwrites the removed edge's adjacency-list slot with the added edge
(lower cell first). Those prompts have equal length and differ exactly at ``edited_pos``.
edge_add inserts ``a <--> b ;`` (lower cell first) at a random entry boundary, so the cyclic
sequence is one entry longer and everything after the insertion shifts; ``edited_pos`` then holds
the inserted coordinate tokens' positions in the cyclic sequence (corrupt for edge_add, clean for
edge_remove). ``decision_pos`` / ``decision_pos_clean``: position in the corrupt / clean sequence
of the token whose next-token prediction names cell k+1, the last token of path cell k (its unary
token; in pair mode its ``",c)"``). Equal for target_move and wall_move.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from mazesearch.data.maze import MazeBatch, edge_endpoints, neighbour_table, read_parquet, write_parquet_atomic
from mazesearch.data.solve import path_stats, solve
from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.data.validate import MazeValidationError, validate
from mazesearch.io import InputError

KINDS = ("target_move", "wall_move", "edge_add", "edge_remove")
FORMAT = "mazesearch.pairs/1"
_SPECIALS = ("<ADJLIST_START>", "<ADJLIST_END>", "<-->", ";", "<ORIGIN_START>", "<ORIGIN_END>",
             "<TARGET_START>", "<TARGET_END>", "<PATH_START>", "<PATH_END>")


@dataclasses.dataclass(frozen=True)
class Pairs:
    """P counterfactual pairs (module doc). Shapes in the comments."""

    kind: np.ndarray  # <U11 [P]: one of KINDS
    maze_row: np.ndarray  # int64 [P]: row of the source maze (the tree side) in the input batch
    clean: MazeBatch  # [P]: the maze the model is run on first
    corrupt: MazeBatch  # [P]: its edited twin
    clean_tokens: TokenBatch  # [P]: full sequences (prompt + path + <PATH_END>)
    corrupt_tokens: TokenBatch  # [P]
    edited_pos: list[np.ndarray]  # P x int64 [*]: edited token positions (module doc)
    decision_step: np.ndarray  # int64 [P]: k; paths agree on cells 0..k, differ at k+1
    decision_pos: np.ndarray  # int64 [P]: position of path cell k's last token in the corrupt sequence
    decision_pos_clean: np.ndarray  # int64 [P]: the same in the clean sequence
    clean_next: np.ndarray  # int64 [P]: clean path cell k+1
    corrupt_next: np.ndarray  # int64 [P]: corrupt path cell k+1
    removed_edge: np.ndarray  # int64 [P]: edge open in clean, closed in corrupt; -1 if none
    added_edge: np.ndarray  # int64 [P]: edge closed in clean, open in corrupt; -1 if none
    coord: str  # "unary" or "pair": tokens per coordinate
    tried: dict  # kind -> source mazes visited to make that kind's pairs (kept by take)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @property
    def clean_is_tree(self) -> np.ndarray:  # bool [P]; the other mazes have exactly one cycle
        return self.kind != "edge_remove"

    @property
    def corrupt_is_tree(self) -> np.ndarray:  # bool [P]
        return self.kind != "edge_add"

    def take(self, idx) -> "Pairs":
        idx = np.asarray(idx, dtype=np.int64)
        arrays = {f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        clean, corrupt = self.clean.take(idx), self.corrupt.take(idx)
        source = self.clean.generator.removesuffix("+edge")
        clean.generator, corrupt.generator = (_batch_generator(source, arrays["kind"], k) for k in _CYCLIC)
        return Pairs(**arrays, clean=clean, corrupt=corrupt,
                     clean_tokens=self.clean_tokens.take(idx), corrupt_tokens=self.corrupt_tokens.take(idx),
                     edited_pos=[self.edited_pos[i] for i in idx], coord=self.coord, tried=dict(self.tried))


_CYCLIC = ("edge_remove", "edge_add")  # the kind whose clean / corrupt maze has a cycle


def _batch_generator(source: str, kind: np.ndarray, cyclic_kind: str) -> str:
    """A side's MazeBatch.generator: the source's, + "+edge" when it holds a cyclic maze."""
    return source + ("+edge" if (kind == cyclic_kind).any() else "")


# ---------------------------------------------------------------------------- tokens


class _Coder:
    """Coordinate tokens of one grid size and coord mode, both ways, and whole sequences."""

    def __init__(self, vocab: Vocab, n: int, coord: str):
        if coord not in ("unary", "pair"):
            raise ValueError(f"coord must be 'unary' or 'pair', got {coord!r}")
        if n > vocab.max_grid_n:
            raise ValueError(f"grid_n={n} exceeds the vocabulary's max_grid_n={vocab.max_grid_n}")
        r, c = np.divmod(np.arange(n * n), n)
        self.n, self.V = n, len(vocab)
        if coord == "unary":
            self.ids = vocab.unary_id[r, c][:, None].astype(np.int64)  # [N, w]
        else:
            self.ids = np.stack([vocab.pair_row_id[r], vocab.pair_col_id[c]], axis=1).astype(np.int64)
        self.w, self.coord = self.ids.shape[1], coord
        # first token -> cell (unary) or row (pair); second token -> column (pair): int64 [V], -1 = none
        self.row_of, self.col_of = np.full(self.V, -1), np.full(self.V, -1)
        if coord == "unary":
            self.row_of[self.ids[:, 0]] = r * n + c
        else:
            self.row_of[self.ids[:, 0]], self.col_of[self.ids[:, 1]] = r, c
        self.sp = {t: vocab.id(t) for t in _SPECIALS}

    def cells(self, seq: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Cell written at each position (its first token); -1 where none: ``int64 [len(pos)]``."""
        a = self.row_of[seq[pos]]
        if self.w == 1:
            return a
        b = self.col_of[seq[pos + 1]]
        return np.where((a >= 0) & (b >= 0), a * self.n + b, -1)

    def assemble(self, slots: np.ndarray, o: int, t: int, path: np.ndarray) -> tuple[np.ndarray, int]:
        """(tokens uint16 [T], prompt_len) for the adjacency entries ``slots`` ([m, 2] cells, in
        list order), origin, target and path."""
        sp, ids = self.sp, self.ids
        entries = [np.concatenate([ids[a], [sp["<-->"]], ids[b], [sp[";"]]]) for a, b in slots]
        prompt = np.concatenate([[sp["<ADJLIST_START>"]], *entries, [sp["<ADJLIST_END>"], sp["<ORIGIN_START>"]],
                                 ids[o], [sp["<ORIGIN_END>"], sp["<TARGET_START>"]], ids[t],
                                 [sp["<TARGET_END>"], sp["<PATH_START>"]]])
        seq = np.concatenate([prompt, ids[np.asarray(path)].ravel(), [sp["<PATH_END>"]]])
        return seq.astype(np.uint16), len(prompt)

    def slots(self, seq: np.ndarray, plen: int, row: int, mazes: MazeBatch) -> np.ndarray:
        """The adjacency entries of a tokens row ([m, 2] cells), checked to encode maze ``row``."""
        w, m = self.w, (plen - 3 - 2 * (self.w + 2)) // (2 * self.w + 2)
        starts = 1 + np.arange(max(m, 0)) * (2 * w + 2)
        if m >= 0 and plen < len(seq) and (starts.size == 0 or starts[-1] + 2 * w + 1 < plen):
            slots = np.stack([self.cells(seq, starts), self.cells(seq, starts + w + 1)], axis=1)
            if (slots >= 0).all():
                want, _ = self.assemble(slots, mazes.origin[row], mazes.target[row], mazes.path(row))
                ends = edge_endpoints(self.n)[mazes.open[row].astype(bool)]
                listed = {tuple(sorted(s)) for s in slots.tolist()}
                if np.array_equal(want, seq) and len(slots) == len(ends) and listed == set(map(tuple, ends.tolist())):
                    return slots
        raise ValueError(f"tokens row {row} is not the coord={self.coord!r} adjacency-list encoding of maze row "
                         f"{row} with its stored path")


# ---------------------------------------------------------------------------- edits


@dataclasses.dataclass
class _Edit:
    k: int  # decision step
    open: np.ndarray  # uint8 [E]: the edited maze's walls
    target: int
    path: np.ndarray  # int32 [*]: its unique shortest path
    removed: int  # edge removed from the tree (wall_move), -1 if none
    added: int  # edge opened in the tree, -1 if none


def _shared(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the common prefix of two cell sequences."""
    diff = np.flatnonzero(a[:min(len(a), len(b))] != b[:min(len(a), len(b))])
    return int(diff[0]) if len(diff) else min(len(a), len(b))


def _is_decision(ends: np.ndarray, open_row: np.ndarray, path: np.ndarray, k: int) -> bool:
    """path[k] has >= 2 open neighbours besides path[k-1] (the origin: >= 2 open neighbours)."""
    deg = int((ends[open_row.astype(bool)] == path[k]).sum())
    return deg >= (2 if k == 0 else 3)


def _attach(nbr, via, open_row, path) -> np.ndarray:
    """Tree rooted at the origin: for each cell, the index on ``path`` of its deepest ancestor
    there (the cell itself if on the path): ``int64 [N]``."""
    index = {int(c): i for i, c in enumerate(path)}
    attach = np.full(nbr.shape[0], -1)
    attach[path[0]] = 0
    queue = [int(path[0])]
    for u in queue:  # BFS; grows while iterating
        for v, e in zip(nbr[u], via[u]):
            if v >= 0 and open_row[e] and attach[v] < 0:
                attach[v] = index.get(int(v), attach[u])
                queue.append(int(v))
    return attach


def _edits(kind: str, mazes: MazeBatch, row: int, lattice) -> list[_Edit]:
    """Every valid edit of maze ``row`` for ``kind`` (edge_remove: those of edge_add)."""
    n, (ends, nbr, via, edge_of) = mazes.grid_n, lattice
    open_row, path = mazes.open[row], mazes.path(row)
    o, t = int(path[0]), int(path[-1])
    closed = np.flatnonzero(open_row == 0)
    cands = []  # (open, target, cut k or -1, removed, added)
    if kind == "target_move":
        cands = [(open_row, c, -1, -1, -1) for c in range(n * n) if c not in (o, t)]
    elif kind == "wall_move":
        attach = _attach(nbr, via, open_row, path)
        for e in closed:
            lo, hi = sorted(attach[ends[e]])
            for k in range(lo, hi):  # e joins the halves of every cut k in lo..hi-1
                if _is_decision(ends, open_row, path, k):
                    cut = edge_of[path[k], path[k + 1]]
                    edited = open_row.copy()
                    edited[cut], edited[e] = 0, 1
                    cands.append((edited, t, k, cut, e))
    else:
        for e in closed:
            edited = open_row.copy()
            edited[e] = 1
            cands.append((edited, t, -1, -1, e))
    if not cands:
        return []
    flat, off, count = solve(n, np.stack([c[0] for c in cands]), np.full(len(cands), o, np.int32),
                             np.array([c[1] for c in cands], np.int32))
    out = []
    for i, (edited, target, cut, removed, added) in enumerate(cands):
        q = flat[off[i]:off[i + 1]]
        m = _shared(path, q)
        if count[i] != 1 or m >= len(path) or m >= len(q):  # unique, and neither path a prefix
            continue
        if kind == "wall_move" and m - 1 != cut:  # the new path must keep path[:cut+1]
            continue
        if not _is_decision(ends, edited if kind in _CYCLIC else open_row, path, m - 1):
            continue
        out.append(_Edit(m - 1, edited, int(target), q.copy(), int(removed), int(added)))
    return out


def _solved_batch(n, generator, open_, origin, target, tree: bool) -> MazeBatch:
    flat, off, count = solve(n, open_, origin, target)
    forks, dead = path_stats(n, open_, flat, off)
    batch = MazeBatch(grid_n=n, generator=generator, open=np.ascontiguousarray(open_, np.uint8),
                      origin=origin.astype(np.int32), target=target.astype(np.int32), path_flat=flat,
                      path_offsets=off, n_shortest_paths=count, forks_on_path=forks, n_dead_ends=dead)
    validate(batch, spanning_tree=tree)
    return batch


def make_pairs(mazes: MazeBatch, tokens: TokenBatch, vocab: Vocab, *, kinds=KINDS, n_per_kind: int,
               seed: int, coord: str = "unary") -> Pairs:
    """Up to ``n_per_kind`` pairs of each kind from ``mazes`` (spanning trees; ``tokens`` their
    adjacency-list sequences, same rows). Each kind draws from its own stream of
    ``np.random.SeedSequence(seed)``: the source rows in a random order, at most one pair per
    source maze, a uniformly random valid edit (and, for the edge kinds, insertion slot).
    Pairs come kind by kind in ``kinds`` order. ValueError on inconsistent input."""
    kinds = tuple(kinds)
    if not kinds or len(set(kinds)) != len(kinds) or not set(kinds) <= set(KINDS):
        raise ValueError(f"kinds must be distinct names from {KINDS}, got {kinds}")
    for name, value in (("n_per_kind", n_per_kind), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if len(tokens) != len(mazes) or not np.array_equal(tokens.maze_id, mazes.maze_id):
        raise ValueError(f"tokens ({len(tokens)} rows) are not row-aligned with mazes ({len(mazes)} rows)")
    if tokens.flat.max(initial=0) >= len(vocab):
        raise ValueError(f"tokens hold ids outside the vocabulary of {len(vocab)} tokens")
    try:
        validate(mazes, spanning_tree=True)
    except MazeValidationError as exc:
        raise ValueError(f"source mazes must be valid spanning trees: {exc}") from None
    n = mazes.grid_n
    coder = _Coder(vocab, n, coord)
    ends = edge_endpoints(n)
    edge_of = np.full((n * n, n * n), -1, np.int64)  # [N, N]: edge joining two cells
    edge_of[ends[:, 0], ends[:, 1]] = edge_of[ends[:, 1], ends[:, 0]] = np.arange(len(ends))
    lattice = (ends, *neighbour_table(n), edge_of)
    streams = np.random.SeedSequence(seed).spawn(len(KINDS))
    cleans, corrupts, records, tried = [], [], [], {}
    for kind in kinds:
        rng = np.random.default_rng(streams[KINDS.index(kind)])
        drawn = []  # (row, edit, adjacency slots of its tokens, insertion slot)
        tried[kind] = 0
        for row in rng.permutation(len(mazes)).tolist():
            if len(drawn) >= n_per_kind:
                break
            tried[kind] += 1
            options = _edits(kind, mazes, row, lattice)
            if options:
                edit = options[rng.integers(len(options))]
                slots = coder.slots(tokens.tokens(row), int(tokens.prompt_len[row]), row, mazes)
                drawn.append((row, edit, slots, int(rng.integers(len(slots) + 1)) if kind in _CYCLIC else -1))
        if not drawn:
            continue
        tree_side = mazes.take(np.array([d[0] for d in drawn]))
        edited = _solved_batch(n, mazes.generator + ("+edge" if kind in _CYCLIC else ""),
                               np.stack([d[1].open for d in drawn]), tree_side.origin,
                               np.array([d[1].target for d in drawn]), tree=kind not in _CYCLIC)
        for i, (row, e, slots, at) in enumerate(drawn):
            assert np.array_equal(edited.path(i), e.path)  # the same solver, the same walls
            records.append(_record(kind, row, e, slots, at, mazes, tokens, coder, lattice))
        cleans.append(edited if kind == "edge_remove" else tree_side)
        corrupts.append(tree_side if kind == "edge_remove" else edited)
    return _assemble_pairs(records, cleans, corrupts, mazes, coord, tried)


def _record(kind: str, row: int, e: _Edit, slots, at: int, mazes: MazeBatch, tokens: TokenBatch, coder: _Coder,
            lattice) -> dict:
    """One pair's fields; the edited sequence is the tree's tokens row edited in place (module doc)."""
    (ends, _, _, edge_of), seq, plen, w = lattice, tokens.tokens(row), int(tokens.prompt_len[row]), coder.w
    if kind == "wall_move":  # the removed edge's slot now lists the added edge
        new_slots = slots.copy()
        new_slots[np.flatnonzero(edge_of[slots[:, 0], slots[:, 1]] == e.removed)[0]] = ends[e.added]
    else:  # target_move: the same list; edge kinds: the added edge inserted at entry boundary `at`
        new_slots = slots if kind == "target_move" else np.insert(slots, at, ends[e.added], axis=0)
    new_seq, new_plen = coder.assemble(new_slots, int(mazes.origin[row]), e.target, e.path)
    if kind in _CYCLIC:
        start = 1 + at * (2 * w + 2)
        pos = np.r_[start:start + w, start + w + 1:start + 2 * w + 1]
    else:
        pos = np.flatnonzero(seq[:plen] != new_seq[:plen])
    rec = dict(kind=kind, maze_row=row, edited_pos=pos.astype(np.int64), decision_step=e.k,
               decision_pos=new_plen + e.k * w + w - 1, decision_pos_clean=plen + e.k * w + w - 1,
               clean_next=int(mazes.path(row)[e.k + 1]), corrupt_next=int(e.path[e.k + 1]),
               removed_edge=e.removed, added_edge=e.added, clean_seq=(seq, plen), corrupt_seq=(new_seq, new_plen))
    if kind == "edge_remove":  # the edge_add pair read backwards
        for a, b in (("decision_pos", "decision_pos_clean"), ("clean_next", "corrupt_next"),
                     ("removed_edge", "added_edge"), ("clean_seq", "corrupt_seq")):
            rec[a], rec[b] = rec[b], rec[a]
    return rec


def _assemble_pairs(records, cleans, corrupts, mazes, coord, tried) -> Pairs:
    kind = np.array([r["kind"] for r in records], "<U11")
    clean, corrupt = (MazeBatch.concat(parts) if parts else mazes.take(np.zeros(0, np.int64))
                      for parts in (cleans, corrupts))
    clean.generator, corrupt.generator = (_batch_generator(mazes.generator, kind, k) for k in _CYCLIC)
    col = lambda name: np.array([r[name] for r in records], np.int64)  # noqa: E731

    def tok(side, ids):
        seqs = [r[side][0] for r in records]
        offsets = np.zeros(len(seqs) + 1, np.int64)
        np.cumsum([len(x) for x in seqs], out=offsets[1:])
        flat = np.concatenate(seqs).astype(np.uint16) if seqs else np.zeros(0, np.uint16)
        return TokenBatch(maze_id=ids.copy(), flat=flat, offsets=offsets,
                          prompt_len=np.array([r[side][1] for r in records], np.int32))

    return Pairs(kind=kind, maze_row=col("maze_row"), clean=clean,
                 corrupt=corrupt, clean_tokens=tok("clean_seq", clean.maze_id),
                 corrupt_tokens=tok("corrupt_seq", corrupt.maze_id), edited_pos=[r["edited_pos"] for r in records],
                 decision_step=col("decision_step"), decision_pos=col("decision_pos"),
                 decision_pos_clean=col("decision_pos_clean"), clean_next=col("clean_next"),
                 corrupt_next=col("corrupt_next"), removed_edge=col("removed_edge"), added_edge=col("added_edge"),
                 coord=coord, tried=tried)


# ---------------------------------------------------------------------------- files and summary

_INT_COLUMNS = ("maze_row", "decision_step", "decision_pos", "decision_pos_clean", "clean_next", "corrupt_next",
                "removed_edge", "added_edge")


def pairs_table(pairs: Pairs) -> pa.Table:
    """One row per pair: kind, the int columns, edited_pos, then each side's maze columns
    (``clean_*`` / ``corrupt_*`` as MazeBatch.to_arrow, with a per-row generator), tokens and
    prompt_len. Schema metadata: format, coord, tried."""
    cols = {"kind": pa.array(pairs.kind.tolist(), pa.string())}
    cols.update({name: pa.array(getattr(pairs, name), pa.int64()) for name in _INT_COLUMNS})
    cols["edited_pos"] = pa.array([p.tolist() for p in pairs.edited_pos], pa.list_(pa.int64()))
    for side, tree in (("clean", pairs.clean_is_tree), ("corrupt", pairs.corrupt_is_tree)):
        mt = getattr(pairs, side).to_arrow()
        source = getattr(pairs, side).generator.removesuffix("+edge")
        for name in mt.column_names:
            cols[f"{side}_{name}"] = mt[name] if name != "generator" else pa.array(
                [source if t else source + "+edge" for t in tree], pa.string())
        tt = getattr(pairs, f"{side}_tokens").to_arrow()
        cols[f"{side}_tokens"], cols[f"{side}_prompt_len"] = tt["tokens"], tt["prompt_len"]
    meta = {"format": FORMAT, "coord": pairs.coord, "tried": json.dumps(pairs.tried)}
    return pa.table(cols).replace_schema_metadata(meta)


def write_pairs(pairs: Pairs, path: str | Path) -> None:
    if len(pairs) == 0:
        raise ValueError("no pairs to write")
    write_parquet_atomic(pairs_table(pairs), path)


def read_pairs(path: str | Path) -> Pairs:
    """The pairs of a file written by :func:`write_pairs`; :class:`InputError` (a ValueError)
    naming the file and the problem when it is not such a file or its pairs do not hold."""
    table = read_parquet(path, "pairs file")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("format") != FORMAT:
        raise InputError(path, f"is not a pairs file (format {meta.get('format')!r}, expected {FORMAT!r})")
    try:
        return _from_table(table, meta)
    except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException, json.JSONDecodeError) as exc:
        raise InputError(path, f"pairs file does not hold valid pairs ({exc})") from None


def _from_table(table: pa.Table, meta: dict) -> Pairs:
    names = ("kind", *_INT_COLUMNS, "edited_pos")
    missing = [c for c in names if c not in table.column_names]
    if missing or any(table[c].null_count for c in names):
        raise ValueError(f"columns {missing} missing, or nulls in {names}")
    kind = np.array(table["kind"].to_pylist(), "<U11")
    if not set(kind.tolist()) <= set(KINDS):
        raise ValueError(f"unknown kinds {sorted(set(kind.tolist()) - set(KINDS))}")
    sides = {}
    for side in ("clean", "corrupt"):
        sub = {c[len(side) + 1:]: table[c] for c in table.column_names if c.startswith(side + "_")}
        maze = MazeBatch.from_arrow(pa.table({k: v for k, v in sub.items() if k not in ("tokens", "prompt_len")}))
        cyclic_kind = _CYCLIC[side == "corrupt"]
        maze.generator = _batch_generator(maze.generator.removesuffix("+edge"), kind, cyclic_kind)
        tree = kind != cyclic_kind
        validate(maze, spanning_tree=False)
        validate(maze.take(np.flatnonzero(tree)), spanning_tree=True)
        toks = TokenBatch.from_arrow(pa.table({"maze_id": sub["maze_id"], "tokens": sub["tokens"],
                                               "prompt_len": sub["prompt_len"]}))
        sides[side] = (maze, toks)
    ints = {c: table[c].to_numpy().astype(np.int64) for c in _INT_COLUMNS}
    (clean, ct), (corrupt, xt) = sides["clean"], sides["corrupt"]
    for i, k in enumerate(ints["decision_step"]):
        a, b = clean.path(i), corrupt.path(i)
        if not (0 <= k < min(len(a), len(b)) - 1 and _shared(a, b) == k + 1
                and (a[k + 1], b[k + 1]) == (ints["clean_next"][i], ints["corrupt_next"][i])
                and ints["decision_pos"][i] < xt.lengths[i] and ints["decision_pos_clean"][i] < ct.lengths[i]):
            raise ValueError(f"pair {i}: decision_step / next cells / positions do not match its paths")
    edited = [np.asarray(p, np.int64) for p in table["edited_pos"].to_pylist()]
    return Pairs(kind=kind, clean=clean, corrupt=corrupt, clean_tokens=ct, corrupt_tokens=xt, edited_pos=edited,
                 coord=meta.get("coord", "unary"), tried={str(k): int(v) for k, v in json.loads(meta["tried"]).items()},
                 **ints)


def summary(pairs: Pairs) -> dict:
    """Per kind (those requested): n_pairs, n_tried (source mazes visited), mean decision_step,
    mean path moves of the clean and the corrupt maze (None without pairs)."""
    out = {}
    for kind in pairs.tried:
        sel = pairs.kind == kind
        mean = lambda x: float(x[sel].mean()) if sel.any() else None  # noqa: E731
        out[kind] = {"n_pairs": int(sel.sum()), "n_tried": int(pairs.tried[kind]),
                     "mean_decision_step": mean(pairs.decision_step),
                     "mean_path_len_clean": mean(pairs.clean.path_len),
                     "mean_path_len_corrupt": mean(pairs.corrupt.path_len)}
    return out
