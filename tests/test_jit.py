"""mazesearch.data.jit (a numba cache that cannot go stale across files) and mazesearch.data.rng
(the one splitmix64 every kernel uses)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mazesearch
from mazesearch.data import jit, rng

PACKAGE = Path(mazesearch.__file__).resolve().parent
M64 = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15

# ---------------------------------------------------------------------------- pure-Python reference


def py_mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def py_splitmix64(state: int) -> tuple[int, int]:
    state = (state + GOLDEN) & M64
    return state, py_mix64(state)


def py_row_state(seed: int, row: int, salt: int) -> int:
    _, z = py_splitmix64(seed)
    _, z = py_splitmix64(z ^ ((row * GOLDEN) & M64))
    _, z = py_splitmix64(z ^ ((salt * 0xBF58476D1CE4E5B9) & M64))
    return z


def test_splitmix64_matches_the_reference_vectors():
    # seed 1234567: the first outputs of Vigna's splitmix64.c
    state, out = 1234567, []
    for _ in range(5):
        state, bits = rng.splitmix64(np.uint64(state))  # (Python ints come back: re-wrap)
        out.append(int(bits))
    assert out == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                   4593380528125082431, 16408922859458223821]


@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 - 1, 2**63 + 12345, M64])
def test_rng_helpers_match_pure_python(seed):
    state, py_state = seed, seed
    for k in (1, 2, 3, 4, 17, 2**31 + 1):
        state, bits = rng.splitmix64(np.uint64(state))
        py_state, py_bits = py_splitmix64(py_state)
        assert (int(state), int(bits)) == (py_state, py_bits)
        assert rng.below(np.uint64(bits), k) == ((py_bits >> 32) * k) >> 32
        st, value = rng.rand_below(np.uint64(seed), k)
        s1, b1 = py_splitmix64(seed)
        assert (int(st), value) == (s1, ((b1 >> 32) * k) >> 32)
    assert int(rng.mix64(np.uint64(seed))) == py_mix64(seed)
    st, u = rng.rand_unit(np.uint64(seed))
    assert u == (py_splitmix64(seed)[1] >> 11) * 2.0**-53 and 0.0 <= u < 1.0
    for row, salt in ((0, 1), (5, 2), (2**40, 3)):
        assert int(rng.row_state(np.uint64(seed), row, salt)) == py_row_state(seed, row, salt)


# ---------------------------------------------------------------------------- the cache


def test_every_kernel_file_uses_the_salted_decorator():
    """No mazesearch file decorates with numba directly (that cache could go stale); every file
    with an ``@njit`` kernel is one the salt covers."""
    direct = re.compile(r"numba\s*\.\s*(?:n?jit|generated_jit|vectorize|guvectorize|cfunc)\b"
                        r"|from\s+numba\s+import[^\n]*\b(?:n?jit|vectorize|guvectorize|cfunc)\b")
    salted = set(jit.kernel_files())
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts or path == Path(jit.__file__).resolve():
            continue
        text = path.read_text()
        assert not direct.search(text), f"{path}: use mazesearch.data.jit.njit, not numba's"
        if re.search(r"^\s*@njit\b", text, re.M):
            assert path in salted, f"{path} has kernels but is not part of the cache salt"
    assert {p.name for p in salted} >= {"jit.py", "rng.py", "solve.py", "validate.py", "generate.py"}


def test_cache_dir_is_salted_and_used():
    assert jit.CACHE_DIR is not None and jit.CACHE_DIR.name == jit.PREFIX + jit.SALT
    assert re.fullmatch(r"[0-9a-f]{16}", jit.SALT)
    locator = rng.splitmix64._cache._impl.locator  # numba's locator stored the salted path
    assert Path(locator.get_cache_path()).is_relative_to(jit.CACHE_DIR)


def test_salt_changes_with_any_kernel_file_only(tmp_path):
    pkg = tmp_path / "mazesearch"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = jit.source_salt(pkg)
    assert before == jit.source_salt(PACKAGE)  # depends on content and relative paths only
    (pkg / "data" / "solve.py").write_text((pkg / "data" / "solve.py").read_text() + "\n# edit\n")
    edited = jit.source_salt(pkg)
    assert edited != before
    if (pkg / "viz").is_dir():  # no kernels there: edits leave the compiled code valid
        (pkg / "viz" / "extra.py").write_text("X = 1\n")
        assert jit.source_salt(pkg) == edited


def test_prune_keeps_the_most_recent(tmp_path):
    now = time.time()
    dirs = [tmp_path / f"{jit.PREFIX}{i:016x}" for i in range(7)]
    for age, d in enumerate(dirs):
        d.mkdir()
        os.utime(d, (now - 100 * age, now - 100 * age))
    (tmp_path / "unrelated").mkdir()
    current = dirs[-1]  # the oldest, but the one this process uses
    jit._prune(tmp_path, current)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([d.name for d in dirs[:jit.KEEP - 1]] + [current.name, "unrelated"])


_PROBE = """
import json
from mazesearch.data import jit
from mazesearch.data.generate import _seeds_kernel, maze_seeds
seeds = maze_seeds(1, 3).tolist()
hits = sum(_seeds_kernel.stats.cache_hits.values())
print(json.dumps({"seeds": seeds, "hits": hits, "cache": str(jit.CACHE_DIR)}))
"""


def _probe(pkg_root: Path, **env) -> dict:
    """Run _PROBE on the package under ``pkg_root``, its user cache under ``pkg_root/xdg``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    environ.update(PYTHONPATH=str(pkg_root), NUMBA_NUM_THREADS="1", XDG_CACHE_HOME=str(pkg_root / "xdg"))
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=environ, cwd=pkg_root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_editing_a_helper_in_another_file_recompiles_the_kernel(tmp_path):
    """generate._seeds_kernel calls rng.mix64. numba's own cache would keep serving the compiled
    _seeds_kernel (keyed on generate.py alone) after rng.py changes; the salted cache must not."""
    shutil.copytree(PACKAGE, tmp_path / "mazesearch", ignore=shutil.ignore_patterns("__pycache__"))
    first = _probe(tmp_path)
    again = _probe(tmp_path)
    assert Path(first["cache"]).parent == tmp_path / "xdg" / "mazesearch"  # the user cache
    assert again == {**first, "hits": again["hits"]} and again["hits"] >= 1  # unchanged: cached

    rng_py = tmp_path / "mazesearch" / "data" / "rng.py"
    text = rng_py.read_text()
    assert text.count("def mix64(z):\n") == 1
    rng_py.write_text(text.replace("def mix64(z):\n", "def mix64(z):\n    return z\n"))
    edited = _probe(tmp_path)
    assert edited["cache"] != first["cache"]
    # with mix64 the identity, seed s gives s + GOLDEN * (i + 1)
    assert edited["seeds"] == [(1 + GOLDEN * (i + 1)) & M64 for i in range(3)] != first["seeds"]

    user_root = tmp_path / "user_cache"  # a user-set NUMBA_CACHE_DIR is the root
    assert Path(_probe(tmp_path, NUMBA_CACHE_DIR=str(user_root))["cache"]).parent == user_root


def test_copies_at_other_paths_load_each_others_kernels(tmp_path):
    """Two copies of the package (a queued experiment's workspace, a test's repo) with one user
    cache: the second loads the kernel the first compiled (numba's own hit counter), because
    the cache entry is keyed on the file's place in the package and its bytes, not its path."""
    for copy in ("a", "b"):
        shutil.copytree(PACKAGE, tmp_path / copy / "mazesearch", ignore=shutil.ignore_patterns("__pycache__"))
    shared = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    first = _probe(tmp_path / "a", **shared)
    second = _probe(tmp_path / "b", **shared)
    assert first["hits"] == 0 and second["hits"] >= 1, (first, second)
    assert first["seeds"] == second["seeds"] and first["cache"] == second["cache"]

    unwritable = tmp_path / "not_a_dir"  # a file: the user cache cannot be made under it
    unwritable.write_text("")
    fallback = _probe(tmp_path / "a", XDG_CACHE_HOME=str(unwritable))
    assert Path(fallback["cache"]).parent == tmp_path / "a" / "mazesearch" / "__pycache__"
