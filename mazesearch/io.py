"""File IO shared by every stage: atomic writers and the error types for bad input.

Writers build ``<path>.tmp`` (or ``<dir>.tmp/``) and rename it into place, so a killed stage
leaves either the old file or the new one, never half of one, and DVC records nothing partial.

Readers of pipeline files (Parquet, safetensors, JSON) raise :class:`InputError` naming the file
and what is wrong with it; :func:`stage_main` turns that (and any :class:`StageError`) into one
``error:`` line and exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path


class StageError(ValueError):
    """A stage cannot run with these inputs (params and data that do not fit together)."""


class InputError(StageError):
    """An input file is missing, unreadable or inconsistent; the message names the file."""

    def __init__(self, path: str | os.PathLike, problem: str, hint: str | None = None) -> None:
        self.path = Path(path)
        problem = " ".join(problem.split())  # one line, whatever a library put in its message
        if len(problem) > 300:
            problem = problem[:297] + "..."
        text = f"{self.path}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, doc, *, sort_keys: bool = False) -> None:
    """Indented JSON with a trailing newline; NaN is refused (JSON has none: write null)."""
    write_text_atomic(path, json.dumps(doc, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty ``<out_dir>.tmp/``; on success swap it in place of ``out_dir``.

    Renames only: a crash leaves the old directory or the new one. On error the temp dir goes.
    """
    out_dir = Path(out_dir)
    tmp = _tmp(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def read_json(path: str | os.PathLike, what: str = "JSON file", hint: str | None = None):
    """Parse a JSON file or raise :class:`InputError` (missing, unreadable, not UTF-8, not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} does not exist", hint)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"{what} is not readable ({exc.strerror or exc})", hint) from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"{what} is not valid JSON ({exc})", hint) from None


def stage_main(main: Callable[[], None]) -> None:
    """Run a stage's ``main``: a bad input file or value becomes one ``error:`` line and exit 2.

    Nothing half-written is left: every writer is atomic, and a stage writes only at its end.
    """
    try:
        main()
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
