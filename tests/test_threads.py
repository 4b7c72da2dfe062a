"""One thread runtime per process (issue 18): numba's parallel kernels must not bring a second
OpenMP runtime beside torch's. With numba on OpenMP, a stage that ran a parallel kernel before
torch's first op ran torch's CPU attention ~15x slower (docs/performance.md). The guard is the
threading layer numba actually launched, read in a fresh process that runs the pipeline's
parallel kernels and then torch, as the stages do."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# what every torch stage does: read/validate/solve mazes with parallel numba kernels, then torch
_PROBE = """
import json
import numba
from mazesearch.data.dataset import build_mazes
build_mazes(generator="dfs", grid_n=4, n_mazes=64, seed=1)  # generate, endpoints and solve kernels (parallel)
import torch
x = torch.randn(4, 8, 16, 8)
torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)
maps = open("/proc/self/maps").read()
omp = sorted({line.rsplit("/", 1)[-1] for line in maps.splitlines() if "gomp" in line or "omppool" in line})
print(json.dumps({"layer": numba.threading_layer(), "omp_libraries": omp}))
"""


def _probe(**env) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    environ.update(PYTHONPATH=str(ROOT), **env)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_parallel_kernels_then_torch_load_one_openmp_runtime():
    got = _probe()
    assert got["layer"] == "workqueue", got
    assert not any("omppool" in name for name in got["omp_libraries"]), got  # numba's OpenMP layer
    # the guard sees the clashing setup when it is forced (the user's explicit choice wins)
    clash = _probe(NUMBA_THREADING_LAYER="omp")
    assert clash["layer"] == "omp" and any("omppool" in n for n in clash["omp_libraries"]), clash
