"""The maze: an n x n lattice whose edges are open (a connection) or closed (a wall).

Everything downstream speaks this form:

* a cell is an integer ``r * n + c``;
* the lattice has ``E = 2 n (n-1)`` edges in one canonical order: first the horizontal edges
  ``(r,c)-(r,c+1)`` for r in 0..n-1, c in 0..n-2 (index ``r*(n-1)+c``), then the vertical edges
  ``(r,c)-(r+1,c)`` for r in 0..n-2, c in 0..n-1 (index ``n*(n-1) + r*n + c``);
* a batch of B mazes stores ``open`` as ``uint8 [B, E]`` (1 = connection, 0 = wall).

``MazeBatch`` holds a batch with its endpoints, one shortest path per maze (ragged, as flat
values + offsets) and cheap per-maze stats, and round-trips through Parquet (docs/data.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mazesearch.data.jit import njit
from mazesearch.io import InputError, atomic_path

# ---------------------------------------------------------------------------- lattice geometry


def n_edges(n: int) -> int:
    return 2 * n * (n - 1)


def edge_endpoints(n: int) -> np.ndarray:
    """Cells at the two ends of every lattice edge, canonical order: ``int32 [E, 2]``, a < b."""
    rows, cols = np.divmod(np.arange(n * n, dtype=np.int32), n)
    cell = rows * n + cols
    grid = cell.reshape(n, n)
    horizontal = np.stack([grid[:, :-1].ravel(), grid[:, 1:].ravel()], axis=1)
    vertical = np.stack([grid[:-1, :].ravel(), grid[1:, :].ravel()], axis=1)
    return np.concatenate([horizontal, vertical]).astype(np.int32)


def neighbour_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For every cell, its lattice neighbours and the edge leading to each.

    Returns ``(nbr, via)``, both ``int32 [n*n, 4]`` in direction order N, E, S, W; -1 where the
    neighbour would fall off the grid. Used by the numba kernels (BFS, generators, metrics).
    """
    ends = edge_endpoints(n)
    nbr = np.full((n * n, 4), -1, dtype=np.int32)
    via = np.full((n * n, 4), -1, dtype=np.int32)
    for e, (a, b) in enumerate(ends):
        if b == a + 1:  # horizontal: b is east of a
            nbr[a, 1], via[a, 1] = b, e
            nbr[b, 3], via[b, 3] = a, e
        else:  # vertical: b is south of a
            nbr[a, 2], via[a, 2] = b, e
            nbr[b, 0], via[b, 0] = a, e
    return nbr, via


DIRECTIONS = ("N", "E", "S", "W")


def edge_index(n: int, a: int, b: int) -> int:
    """Canonical index of the lattice edge between adjacent cells a and b (ValueError if not)."""
    a, b = min(a, b), max(a, b)
    ra, ca = divmod(a, n)
    rb, cb = divmod(b, n)
    if ra == rb and cb == ca + 1:
        return ra * (n - 1) + ca
    if ca == cb and rb == ra + 1:
        return n * (n - 1) + ra * n + ca
    raise ValueError(f"cells {a} and {b} are not lattice-adjacent on a {n}x{n} grid")


# ---------------------------------------------------------------------------- content hash


@njit
def _hash_rows(n: int, open_: np.ndarray, origin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a over (n, open edges, origin, target) of each maze."""
    out = np.empty(open_.shape[0], dtype=np.uint64)
    prime = np.uint64(1099511628211)
    for i in range(open_.shape[0]):
        h = np.uint64(14695981039346656037)
        h = (h ^ np.uint64(n)) * prime
        for e in range(open_.shape[1]):
            h = (h ^ np.uint64(open_[i, e] + 2)) * prime
        h = (h ^ np.uint64(origin[i] + 1000003)) * prime
        h = (h ^ np.uint64(target[i] + 2000003)) * prime
        out[i] = h
    return out


def maze_ids(n: int, open_: np.ndarray, origin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Content hash of walls + origin + target: ``uint64 [B]``. Equal mazes get equal ids."""
    return _hash_rows(
        n,
        np.ascontiguousarray(open_, dtype=np.uint8),
        np.ascontiguousarray(origin, dtype=np.int64),
        np.ascontiguousarray(target, dtype=np.int64),
    )


# ---------------------------------------------------------------------------- the batch


@dataclasses.dataclass
class MazeBatch:
    """B solved mazes of one grid size. Shapes in the field comments."""

    grid_n: int
    generator: str
    open: np.ndarray  # uint8 [B, E]: 1 = connection
    origin: np.ndarray  # int32 [B]: cell index
    target: np.ndarray  # int32 [B]
    path_flat: np.ndarray  # int32 [sum(path cells)]: one shortest path per maze, origin..target
    path_offsets: np.ndarray  # int64 [B+1]: maze i's path is path_flat[off[i]:off[i+1]]
    n_shortest_paths: np.ndarray  # int64 [B]: number of distinct shortest paths (saturates)
    forks_on_path: np.ndarray  # int16 [B]: decision points on the path (see docs/data.md)
    n_dead_ends: np.ndarray  # int16 [B]: cells of degree 1
    maze_id: np.ndarray | None = None  # uint64 [B]; computed from content when None

    def __post_init__(self) -> None:
        if self.maze_id is None:
            self.maze_id = maze_ids(self.grid_n, self.open, self.origin, self.target)

    def __len__(self) -> int:
        return int(self.origin.shape[0])

    @property
    def path_len(self) -> np.ndarray:
        """Moves on the stored shortest path (cells - 1): ``int32 [B]``."""
        return (np.diff(self.path_offsets) - 1).astype(np.int32)

    def path(self, i: int) -> np.ndarray:
        return self.path_flat[self.path_offsets[i] : self.path_offsets[i + 1]]

    def take(self, idx: np.ndarray) -> "MazeBatch":
        """Sub-batch of the given row indices (order kept)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = np.diff(self.path_offsets)[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.concatenate(
            [np.arange(self.path_offsets[i], self.path_offsets[i + 1]) for i in idx]
        ) if len(idx) else np.zeros(0, dtype=np.int64)
        return MazeBatch(
            grid_n=self.grid_n,
            generator=self.generator,
            open=self.open[idx],
            origin=self.origin[idx],
            target=self.target[idx],
            path_flat=self.path_flat[gather].astype(np.int32),
            path_offsets=offsets,
            n_shortest_paths=self.n_shortest_paths[idx],
            forks_on_path=self.forks_on_path[idx],
            n_dead_ends=self.n_dead_ends[idx],
            maze_id=self.maze_id[idx],
        )

    @staticmethod
    def concat(batches: list["MazeBatch"]) -> "MazeBatch":
        first = batches[0]
        assert all(b.grid_n == first.grid_n for b in batches), "grid sizes differ"
        lengths = np.concatenate([np.diff(b.path_offsets) for b in batches])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        cat = lambda name: np.concatenate([getattr(b, name) for b in batches])  # noqa: E731
        return MazeBatch(
            grid_n=first.grid_n,
            generator=first.generator,
            open=cat("open"),
            origin=cat("origin"),
            target=cat("target"),
            path_flat=cat("path_flat"),
            path_offsets=offsets,
            n_shortest_paths=cat("n_shortest_paths"),
            forks_on_path=cat("forks_on_path"),
            n_dead_ends=cat("n_dead_ends"),
            maze_id=cat("maze_id"),
        )

    # ------------------------------------------------------------------ parquet

    def to_arrow(self) -> pa.Table:
        B, E = self.open.shape
        packed = np.packbits(self.open.astype(np.uint8), axis=1, bitorder="little")
        width = packed.shape[1]
        edges = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), B, [None, pa.py_buffer(np.ascontiguousarray(packed).tobytes())]
        )
        path = pa.ListArray.from_arrays(
            pa.array(self.path_offsets.astype(np.int32)),
            pa.array(self.path_flat.astype(np.int16)),
        )
        return pa.table(
            {
                "maze_id": pa.array(self.maze_id.astype(np.uint64)),
                "grid_n": pa.array(np.full(B, self.grid_n, dtype=np.uint8)),
                "generator": pa.array([self.generator] * B, pa.string()).dictionary_encode(),
                "edges": edges,
                "origin": pa.array(self.origin.astype(np.int16)),
                "target": pa.array(self.target.astype(np.int16)),
                "path": path,
                "path_len": pa.array(self.path_len.astype(np.int16)),
                "n_shortest_paths": pa.array(self.n_shortest_paths.astype(np.int64)),
                "forks_on_path": pa.array(self.forks_on_path.astype(np.int16)),
                "n_dead_ends": pa.array(self.n_dead_ends.astype(np.int16)),
            }
        )

    @staticmethod
    def from_arrow(table: pa.Table) -> "MazeBatch":
        """The batch a :meth:`to_arrow` table holds; ``ValueError`` when its schema or shape is off.

        Only the layout is checked here; :func:`read_mazes` also runs the per-maze validator.
        """
        required = ("maze_id", "grid_n", "generator", "edges", "origin", "target", "path",
                    "n_shortest_paths", "forks_on_path", "n_dead_ends")
        missing = set(required) - set(table.column_names)
        if missing:
            raise ValueError(f"maze table lacks columns {sorted(missing)}")
        with_nulls = [name for name in required if table[name].null_count]
        if with_nulls:
            raise ValueError(f"maze table has null values in columns {with_nulls}")
        if table.num_rows == 0:
            raise ValueError("maze table has no rows")
        types = table.schema
        for name in ("maze_id", "grid_n", "origin", "target", "n_shortest_paths", "forks_on_path", "n_dead_ends"):
            if not pa.types.is_integer(types.field(name).type):
                raise ValueError(f"maze table column {name!r} must be integers, got {types.field(name).type}")
        path_type = types.field("path").type
        if not (pa.types.is_list(path_type) and pa.types.is_integer(path_type.value_type)):
            raise ValueError(f"maze table column 'path' must be a list of integers, got {path_type}")
        table = table.combine_chunks()
        grid = np.unique(table["grid_n"].to_numpy())
        if len(grid) != 1:
            raise ValueError(f"maze table mixes grid sizes {grid.tolist()}")
        n = int(grid[0])
        if not 1 <= n <= 255:
            raise ValueError(f"maze table has grid_n={n}, outside 1..255")
        B = table.num_rows
        E = n_edges(n)
        width = (E + 7) // 8
        if types.field("edges").type != pa.binary(width):
            raise ValueError(f"maze table column 'edges' must be fixed_size_binary[{width}] for a {n}x{n} "
                             f"grid, got {types.field('edges').type}")
        edges = table["edges"].chunk(0)
        raw = np.frombuffer(edges.buffers()[1], dtype=np.uint8, count=B * width, offset=edges.offset * width)
        open_ = np.unpackbits(raw.reshape(B, width), axis=1, bitorder="little", count=E)
        paths = table["path"].chunk(0)
        offsets = paths.offsets.to_numpy().astype(np.int64)
        flat = paths.values.to_numpy().astype(np.int32)[offsets[0] : offsets[-1]]
        gens = table["generator"].to_pylist()
        return MazeBatch(
            grid_n=n,
            generator=str(gens[0]) if gens else "",
            open=np.ascontiguousarray(open_),
            origin=table["origin"].to_numpy().astype(np.int32),
            target=table["target"].to_numpy().astype(np.int32),
            path_flat=flat,
            path_offsets=offsets - offsets[0],
            n_shortest_paths=table["n_shortest_paths"].to_numpy().astype(np.int64),
            forks_on_path=table["forks_on_path"].to_numpy().astype(np.int16),
            n_dead_ends=table["n_dead_ends"].to_numpy().astype(np.int16),
            maze_id=table["maze_id"].to_numpy().astype(np.uint64),
        )


# ---------------------------------------------------------------------------- file IO


def write_parquet_atomic(table: pa.Table, path: str | Path, row_group_size: int = 65536) -> None:
    """Write via ``<path>.tmp`` + rename (mazesearch.io), so a killed stage leaves no half file.

    Statistics and timestamps stay out of the file so that equal tables give equal bytes.
    """
    with atomic_path(path) as tmp:
        pq.write_table(
            table, tmp, row_group_size=row_group_size, compression="zstd",
            write_statistics=False, store_schema=True,
        )


def read_parquet(path: str | Path, what: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet table, or :class:`InputError` naming the file (missing, truncated, not Parquet)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} does not exist", "run `dvc repro` for the stage that writes it")
    try:
        if columns is not None:
            missing = [c for c in columns if c not in pq.read_schema(path).names]
            if missing:
                raise InputError(path, f"{what} lacks columns {missing}")
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"{what} is not readable Parquet ({exc})") from None


def write_mazes(batch: MazeBatch, path: str | Path) -> None:
    write_parquet_atomic(batch.to_arrow(), path)


def read_mazes(path: str | Path, *, check: bool = True) -> MazeBatch:
    """The mazes of a file written by :func:`write_mazes`, or :class:`InputError` naming it.

    With ``check`` (the default) every maze also passes :func:`mazesearch.data.validate.validate`
    (path through open edges from origin to target, shortest, its stats and maze_id consistent;
    as ``spanning_tree=False``, since the file does not record the generator's options). On the
    300k-maze 4x4 train file that adds ~0.05-0.1 s to a ~0.45 s read, plus ~0.5 s once per
    process to load the compiled validation kernel; ``check=False`` skips it.
    """
    table = read_parquet(path, "maze file")
    try:
        batch = MazeBatch.from_arrow(table)
    except (KeyError, ValueError, TypeError, pa.ArrowException) as exc:
        raise InputError(path, f"maze file does not hold valid mazes ({exc})") from None
    if check:
        from mazesearch.data.validate import MazeValidationError, validate  # validate imports this module

        try:
            validate(batch, spanning_tree=False)
        except MazeValidationError as exc:
            raise InputError(path, f"maze file row {exc.index} (maze_id {int(batch.maze_id[exc.index])}) "
                             f"is not a valid maze: {exc.reason}", "regenerate it with `dvc repro generate`") from None
        except ValueError as exc:  # shapes the validator refuses before any maze (e.g. grid_n < 2)
            raise InputError(path, f"maze file does not hold valid mazes ({exc})") from None
    return batch


def _int_column(path: str | Path, table: pa.Table, name: str) -> np.ndarray:
    column = table[name]
    if not pa.types.is_integer(column.type) or column.null_count:
        raise InputError(path, f"maze file column {name!r} must be integers without nulls, got {column.type}")
    return column.to_numpy()


def read_maze_ids(path: str | Path) -> np.ndarray:
    """The ``maze_id`` column alone (e.g. the training set, to count leakage)."""
    table = read_parquet(path, "maze file", columns=["maze_id"])
    return _int_column(path, table, "maze_id")


def read_grid_n(path: str | Path) -> int:
    """The grid size of a maze file (every row of one file shares it)."""
    table = read_parquet(path, "maze file", columns=["grid_n"])
    if table.num_rows == 0:
        raise InputError(path, "maze file has no rows")
    grid = np.unique(_int_column(path, table, "grid_n"))
    if len(grid) != 1:
        raise InputError(path, f"maze file mixes grid sizes {grid.tolist()}")
    return int(grid[0])
