"""The one numba decorator of mazesearch: :func:`njit`, with an on-disk cache that cannot go stale.

numba's own ``cache=True`` keys a cached kernel on the source file of the decorated function
(and its bytecode) only. A kernel that calls or inlines a helper from another file, or reads a
constant defined there, keeps running the old helper after that other file is edited. Every
kernel of mazesearch is therefore compiled with :func:`njit` from this module, which caches into
a directory salted with :data:`SALT`: a hash of the source of every mazesearch file that uses
this module (the kernel files, found by scanning the package for ``mazesearch.data.jit``
imports, plus this file). Editing any kernel file changes the salt, so every kernel is
recompiled once into a fresh directory; nothing compiled from older sources is ever loaded.

Inside that directory a kernel is filed under its file's place in the package (``data/``)
(:class:`PackageCacheLocator`), not under its absolute path as numba files it, and numba checks
it against a hash of the file's bytes: copies of the same sources elsewhere (a second checkout, the temporary workspace
of a queued ``dvc exp run``, a test's temporary repo) load each other's compiled kernels instead
of spending ~40 s compiling them again.

Where: ``<root>/mazesearch-numba-<salt>/``, where ``<root>`` is ``$NUMBA_CACHE_DIR`` when the user
set it (numba's config), else ``$XDG_CACHE_HOME/mazesearch`` (default ``~/.cache/mazesearch``,
shared by every checkout), else ``mazesearch/__pycache__`` beside the package when the user
cache is not writable. Only the :data:`KEEP` most recently used salted directories under a root
are kept; older ones are deleted on import (a process still compiling into a deleted one just
recreates it). With no writable root, kernels are compiled in every process (``cache=False``:
~25 s to compile every kernel of the package).

Kernels may read globals only from kernel files (files that import this module): a constant
from any other file is frozen into the compiled code without being part of the salt.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import numba
from numba.core import config as _numba_config
from numba.core.caching import UserProvidedCacheLocator

# One thread runtime per process. numba's default parallel backend here is OpenMP (TBB is not
# installed) and torch ships its own OpenMP runtime: a process that ran a parallel kernel before
# torch's first op ran torch's attention ~15x slower on 2 cores (docs/performance.md). numba's
# own "workqueue" pool needs no OpenMP, so torch's runtime is the only one in the process. numba
# picks its layer when the first parallel kernel launches, so setting it here (every kernel file
# imports this module) is early enough. A user's explicit NUMBA_THREADING_LAYER is respected.
THREADING_LAYER = "workqueue"
if not os.environ.get("NUMBA_THREADING_LAYER"):
    _numba_config.THREADING_LAYER = THREADING_LAYER

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # .../mazesearch
_THIS = Path(__file__).resolve().relative_to(PACKAGE_DIR)  # data/jit.py
PREFIX = "mazesearch-numba-"
KEEP = 4  # salted cache directories kept per root
# a kernel file: imports this module ("from mazesearch.data.jit import njit", "from
# mazesearch.data import jit", "import mazesearch.data.jit")
_USES_JIT = re.compile(rb"^[ \t]*(?:from|import)[ \t]+mazesearch\.data(?:\.jit\b|[ \t]+import[^\n]*\bjit\b)", re.M)


def kernel_files(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package's ``.py`` files that define numba kernels (those importing this module), and
    this file itself; sorted."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        if path.relative_to(package_dir) == _THIS or _USES_JIT.search(path.read_bytes()):
            found.append(path)
    return found


def source_salt(package_dir: Path = PACKAGE_DIR) -> str:
    """16 hex digits of sha256 over the relative path and bytes of every :func:`kernel_files`."""
    h = hashlib.sha256(numba.__version__.encode())
    for path in kernel_files(package_dir):
        h.update(b"\0" + path.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
        return True
    except OSError:
        return False


def _cache_root() -> Path | None:
    """The first writable of: $NUMBA_CACHE_DIR, the user cache dir, mazesearch/__pycache__."""
    if _numba_config.CACHE_DIR:  # the user's choice (env var or numba config file)
        candidates = [Path(_numba_config.CACHE_DIR)]
    else:
        user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mazesearch"
        candidates = [user, PACKAGE_DIR / "__pycache__"]
    return next((root for root in candidates if _writable(root)), None)


def _prune(root: Path, current: Path) -> None:
    """Delete all but the :data:`KEEP` most recently used salted directories under ``root``."""
    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    old = sorted((p for p in root.glob(PREFIX + "*") if p != current and p.is_dir()),
                 key=mtime, reverse=True)
    for path in old[KEEP - 1:]:
        shutil.rmtree(path, ignore_errors=True)


def _setup() -> Path | None:
    root = _cache_root()
    if root is None:
        return None
    path = root / (PREFIX + SALT)
    try:
        path.mkdir(exist_ok=True)
        os.utime(path)  # "most recently used", for _prune
    except OSError:
        return None
    _prune(root, path)
    return path


SALT = source_salt()
CACHE_DIR: Path | None = _setup()  # None: no writable cache location, kernels are not cached


class PackageCacheLocator(UserProvidedCacheLocator):
    """numba's locator for a user-set cache directory, with one key changed for mazesearch's
    kernels: the path under the salted directory is the kernel file's folder inside the package
    (``data``), not a hash of its absolute path. numba's own source stamp is already a hash of
    the file's bytes, so the same bytes at another path load the same cache entry. A file
    outside the package keeps numba's own layout."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        try:
            folder = Path(py_file).resolve().parent.relative_to(PACKAGE_DIR)
        except ValueError:
            return
        self._cache_path = os.path.join(_numba_config.CACHE_DIR, "package", *folder.parts)


@contextlib.contextmanager
def _numba_cache_dir(path: Path):
    """numba's locator reads ``config.CACHE_DIR`` and ``config.CACHE_LOCATOR_CLASSES`` when a
    cached dispatcher is created, and stores the path it picked, so set both only around the
    decoration: other libraries' numba functions in the process keep their own cache location.
    An older numba ignores the locator setting and files kernels by absolute path: still
    correct, only not shared between copies."""
    before = _numba_config.CACHE_DIR, getattr(_numba_config, "CACHE_LOCATOR_CLASSES", None)
    _numba_config.CACHE_DIR = str(path)
    _numba_config.CACHE_LOCATOR_CLASSES = f"{__name__}.{PackageCacheLocator.__name__}"
    try:
        yield
    finally:
        _numba_config.CACHE_DIR, _numba_config.CACHE_LOCATOR_CLASSES = before


def njit(fn=None, **options):
    """``numba.njit`` for mazesearch kernels: ``cache=True`` by default, cached under
    :data:`CACHE_DIR` (salted by the source of every kernel file). Use as ``@njit`` or
    ``@njit(parallel=True)``, ``@njit(inline="always")``; other options go to numba."""
    if fn is None:
        return lambda f: njit(f, **options)
    options.setdefault("cache", True)
    if not options["cache"] or CACHE_DIR is None:
        options["cache"] = False
        return numba.njit(**options)(fn)
    with _numba_cache_dir(CACHE_DIR):
        return numba.njit(**options)(fn)
