"""Reading an activation cache back (docs/activations.md): ``ActivationStore`` memory-maps the
float16 layer files and checks every file it opens, so a damaged cache is one ``InputError``
naming the file. No torch and no transformer_lens here: the probes stage reads caches cheaply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mazesearch.data.maze import read_parquet
from mazesearch.io import InputError, read_json

FORMAT = "mazesearch.activations/1"
INDEX_FILE, META_FILE = "index.parquet", "meta.json"



INDEX_COLUMNS = ("row", "maze_row", "maze_id", "kind", "path_step", "current_cell", "token_pos")
_HINT = "re-run `dvc repro activations`"


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from a ``.npy`` header; InputError when it is not one."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"activation layer file is not a .npy array ({exc})", _HINT) from None
    if fortran:
        raise InputError(path, "activation layer file is Fortran-ordered, expected C order", _HINT)
    return shape, dtype, offset


def check_store_mazes(store, maze_ids: np.ndarray, mazes_path: str | Path) -> None:
    """:class:`~mazesearch.io.InputError` unless every index row of ``store`` (an
    :class:`ActivationStore`, or anything with its ``index``) refers to a maze of the file at
    ``mazes_path`` (``maze_ids``, in file order): the same maze_id at its maze_row."""
    index = store.index
    where = Path(getattr(store, "directory", "activation cache")) / INDEX_FILE
    rows = index["maze_row"].to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= len(maze_ids)):
        raise InputError(where, f"activation index refers to maze row {int(rows.max())} but {mazes_path} has "
                         f"{len(maze_ids)} mazes", _HINT)
    if not np.array_equal(index["maze_id"].to_numpy().astype(np.uint64), np.asarray(maze_ids, np.uint64)[rows]):
        raise InputError(where, f"activation index holds other mazes than {mazes_path} (maze_id differs at its "
                         "maze_row)", _HINT)


class ActivationStore:
    """A cache written by :func:`extract_activations`: ``index``, ``layers``, ``load``, ``meta``.

    Opening one checks what is cheap to check, so a damaged cache fails before any work:
    meta.json (present, JSON, this format, ``n_rows`` and ``layers`` well-formed), index.parquet
    present, and every layer's ``.npy`` header (float16 ``[n_rows, width]``) and size (not
    truncated). ``index`` checks its rows and columns when first read. Every problem is an
    :class:`~mazesearch.io.InputError` naming the file.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        meta_path = self.directory / META_FILE
        if not meta_path.is_file():
            raise InputError(meta_path, f"{self.directory} is not an activation cache ({META_FILE} is missing)", _HINT)
        meta = read_json(meta_path, "activation cache meta", _HINT)
        if not isinstance(meta, dict):
            raise InputError(meta_path, "activation cache meta must be a JSON object", _HINT)
        if meta.get("format") != FORMAT:
            raise InputError(meta_path, f"format {meta.get('format')!r} is not {FORMAT!r}", _HINT)
        n_rows, layers = meta.get("n_rows"), meta.get("layers")
        if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 0:
            raise InputError(meta_path, f"n_rows must be a non-negative int, got {n_rows!r}", _HINT)
        if not isinstance(layers, list) or not all(
                isinstance(l, dict) and isinstance(l.get("name"), str) and isinstance(l.get("file"), str)
                and Path(l["file"]).name == l["file"] and isinstance(l.get("width"), int)
                and not isinstance(l.get("width"), bool) for l in layers):
            raise InputError(meta_path, "layers must be a list of {name, file, width} entries", _HINT)
        self.meta: dict = meta
        self.layers: list[str] = [layer["name"] for layer in layers]
        self._files = {layer["name"]: self.directory / layer["file"] for layer in layers}
        if not (self.directory / INDEX_FILE).is_file():
            raise InputError(self.directory / INDEX_FILE, "activation index does not exist", _HINT)
        for layer in layers:
            self._check_layer_file(self._files[layer["name"]], layer["width"])
        self._index: pd.DataFrame | None = None

    def _check_layer_file(self, path: Path, width: int) -> None:
        if not path.is_file():
            raise InputError(path, "activation layer file does not exist", _HINT)
        shape, dtype, offset = _npy_layout(path)
        if dtype != np.float16 or shape != (len(self), width):
            raise InputError(path, f"activation layer file is {dtype} {list(shape)}, {META_FILE} says float16 "
                             f"[{len(self)}, {width}]", _HINT)
        want, have = offset + len(self) * width * 2, path.stat().st_size
        if have != want:
            raise InputError(path, f"activation layer file has {have} bytes, its header says {want}"
                             + (" (truncated)" if have < want else ""), _HINT)

    @property
    def index(self) -> pd.DataFrame:
        if self._index is None:
            path = self.directory / INDEX_FILE
            table = read_parquet(path, "activation index")
            missing = [c for c in INDEX_COLUMNS if c not in table.column_names]
            if missing:
                raise InputError(path, f"activation index lacks columns {missing}", _HINT)
            if table.num_rows != len(self):
                raise InputError(path, f"activation index has {table.num_rows} rows, {META_FILE} says {len(self)}", _HINT)
            self._index = table.to_pandas()
        return self._index

    def __len__(self) -> int:
        return int(self.meta["n_rows"])

    def load(self, layer: str) -> np.ndarray:
        """``float16 [rows, width]`` (width = d_model on the residual stream), memory-mapped."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not in this cache; it has {self.layers}")
        path = self._files[layer]
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:  # changed on disk since the store was opened
            raise InputError(path, f"activation layer file is not readable ({exc})", _HINT) from None
        if array.dtype != np.float16 or array.ndim != 2 or array.shape[0] != len(self):
            raise InputError(path, f"activation layer file is {array.dtype} {list(array.shape)}, expected float16 "
                             f"[{len(self)}, width]", _HINT)
        return array


def open_checked_stores(mazes_dir, activations_dir, dataset: str, open_store=None):
    """``(mazes, trained, random_init)``: the mazes of ``dataset`` and the two caches the
    activations stage wrote under ``activations_dir`` (``trained/``, ``random/``), each checked to
    index those mazes (:func:`check_store_mazes`). ``open_store(path)``: the stage's seam (tests
    hand in planted stores); by default :class:`ActivationStore`."""
    from mazesearch.data.maze import read_mazes

    open_store = open_store or ActivationStore
    mazes_path = Path(mazes_dir) / f"{dataset}.parquet"
    mazes = read_mazes(mazes_path)
    acts = Path(activations_dir)
    trained, random_init = open_store(acts / "trained"), open_store(acts / "random")
    for store in (trained, random_init):  # both caches were made from this maze file
        check_store_mazes(store, mazes.maze_id, mazes_path)
    return mazes, trained, random_init
