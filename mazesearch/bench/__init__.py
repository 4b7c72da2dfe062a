"""Benchmarks: ``python -m mazesearch.bench <name> [options]`` runs ``mazesearch.bench.<name>``.

Each benchmark module has ``main(argv) -> None`` and writes one JSON file under
``reports/bench/``. Timings on shared machines are noisy, so a benchmark reports medians over
repeats, ratios against a reference measured in the same run, and the machine (see
:func:`machine_info`). Tests never assert on these numbers.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from mazesearch.io import write_json_atomic


def machine_info() -> dict:
    """CPU, OS and library versions, plus the load average (how busy the machine was)."""
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for pkg in ("numpy", "numba", "pyarrow", "torch", "transformer-lens", "maze-dataset"):
        info[pkg.replace("-", "_")] = version(pkg)
    if "numba" in sys.modules:
        import numba

        info["numba_threads"] = numba.get_num_threads()
    return info


def timed(fn: Callable[[], int], repeats: int) -> dict:
    """Run ``fn`` (returns the number of items it processed) ``repeats`` times.

    Returns the median items per wall-clock second and per CPU second of this process (the
    latter is less sensitive to other processes on a shared machine), and every repeat's rate.
    """
    wall_rates, cpu_rates = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        items = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        wall_rates.append(items / wall)
        cpu_rates.append(items / cpu if cpu > 0 else float("inf"))
    return {
        "per_s": statistics.median(wall_rates),
        "per_cpu_s": statistics.median(cpu_rates),
        "per_s_repeats": [round(r, 1) for r in wall_rates],
    }


def write_report(path: str | Path, doc: dict) -> None:
    """Write ``doc`` as indented JSON, atomically (tmp + rename)."""
    write_json_atomic(path, doc)


def profile_specs(params_path: str, dataset: str | None, default_dataset: dict,
                  default_model: dict) -> tuple[dict, dict, dict]:
    """(dataset spec, model spec, tokenizer spec) from params.yaml when it exists, else defaults.

    ``dataset`` names the params dataset to benchmark on (its n_mazes dropped: the benchmark sets
    its own), or None to keep ``default_dataset``.
    """
    spec, model, tok = dict(default_dataset), dict(default_model), {"max_grid_n": 8}
    if Path(params_path).exists():
        from mazesearch.params import load_params

        p = load_params(params_path)
        if dataset is not None and dataset in p.datasets:
            spec = p.datasets[dataset].model_dump(exclude_defaults=True)
            spec.pop("n_mazes", None)
        if p.model is not None:
            model = p.model.model_dump()
        tok = p.tokenizer.model_dump()
    return spec, model, tok
