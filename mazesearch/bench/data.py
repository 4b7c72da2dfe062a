"""Data benchmark: solved mazes per second, ours vs maze-dataset 1.4.2, in one run.

``python -m mazesearch.bench data [--quick]`` measures, per generator and grid size,
:func:`mazesearch.data.dataset.build_mazes` end to end (generate, endpoints, solve, stats,
validate) and maze-dataset's serial path for the same generator (``LatticeMazeGenerators.gen_*``
+ ``generate_random_path`` + ``SolvedMaze.from_lattice_maze``, what
``MazeDataset.generate(gen_parallel=False)`` does per maze), then tokenization at 6x6: ours
(``tokens.encode`` + ``write_tokens`` to Parquet) vs maze-dataset's ``as_tokens`` with the
AOTP_UT tokenizer plus ``encode`` to ids (no file written). Medians over repeats; ratio =
ours / reference. Writes ``reports/bench/data.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mazesearch.bench import machine_info, timed, write_report
from mazesearch.data.dataset import build_mazes

TARGET_DFS_6X6 = 120_000  # project target: solved 6x6 dfs mazes/s end to end on 2 cores

# generator -> (options for both implementations, maze-dataset constructor or None)
GENERATORS = {
    "dfs": ({}, "gen_dfs"),
    "wilson": ({}, "gen_wilson"),
    "kruskal": ({}, "gen_kruskal"),
    "recursive_division": ({}, "gen_recursive_division"),
    "percolation": ({"p": 0.5}, "gen_percolation"),
    "dfs_percolation": ({"p": 0.2}, "gen_dfs_percolation"),
    "open_field": ({"n_obstacles": 2}, None),
}
MAZES_PER_RUN = {6: 100_000, 10: 25_000}  # ours; other sizes scale by cells


def _n_ours(grid_n: int, scale: float) -> int:
    base = MAZES_PER_RUN.get(grid_n, int(3_600_000 / grid_n**2))
    return max(100, int(base * scale))


def measure_ours(generator: str, grid_n: int, options: dict, n_mazes: int, repeats: int) -> dict:
    build_mazes(generator=generator, grid_n=grid_n, n_mazes=1000, seed=0, **options)  # warm caches
    seeds = iter(range(1, repeats + 1))

    def run() -> int:
        batch, _ = build_mazes(generator=generator, grid_n=grid_n, n_mazes=n_mazes,
                               seed=next(seeds), **options)
        return len(batch)

    return {"n_mazes": n_mazes, **timed(run, repeats)}


def _reference_maker(ctor_name: str, grid_n: int, options: dict):
    """A function returning one solved maze-dataset maze, or None when no endpoints exist."""
    from maze_dataset import LatticeMazeGenerators, SolvedMaze

    ctor = getattr(LatticeMazeGenerators, ctor_name)
    shape = np.array([grid_n, grid_n])
    kwargs = {"p": options["p"]} if "p" in options else {}

    def one():
        maze = ctor(shape, **kwargs)
        path = maze.generate_random_path(endpoints_not_equal=True, except_on_no_valid_endpoint=False)
        return None if path is None else SolvedMaze.from_lattice_maze(maze, path)

    return one


def measure_reference(ctor_name: str, grid_n: int, options: dict, max_mazes: int,
                      max_seconds: float, repeats: int) -> dict:
    one = _reference_maker(ctor_name, grid_n, options)
    one()  # warm up imports and caches
    counts = []

    def run() -> int:
        start, solved, tries = time.perf_counter(), 0, 0
        while solved < max_mazes and (solved < 20 or time.perf_counter() - start < max_seconds):
            tries += 1
            if tries > 50 * max_mazes:
                raise RuntimeError(f"maze-dataset {ctor_name} {grid_n}x{grid_n} keeps failing to find endpoints")
            solved += one() is not None
        counts.append(solved)
        return solved

    return {"n_mazes": counts, **timed(run, repeats)}


def measure_tokenize(grid_n: int, n_mazes: int, repeats: int, reference: bool, ref_mazes: int) -> dict:
    """Tokenize + write Parquet (ours) vs maze-dataset's AOTP_UT ``as_tokens`` + ``encode``."""
    from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, write_tokens

    batch, _ = build_mazes(generator="dfs", grid_n=grid_n, n_mazes=n_mazes, seed=0)
    vocab, opts = Vocab.build(grid_n), TokenizerOptions()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tokens.parquet"
        write_tokens(encode(batch.take(np.arange(100)), vocab, opts), out)  # warm caches

        def run() -> int:
            write_tokens(encode(batch, vocab, opts), out)
            return len(batch)

        result = {"grid_n": grid_n, "ours": {"n_mazes": n_mazes, **timed(run, repeats)}}
    if reference:
        from maze_dataset.tokenization import MazeTokenizer, TokenizationMode

        tok = MazeTokenizer(tokenization_mode=TokenizationMode.AOTP_UT_uniform, max_grid_size=grid_n)
        one = _reference_maker("gen_dfs", grid_n, {})
        mazes = [one() for _ in range(ref_mazes)]

        def run_ref() -> int:
            for m in mazes:
                tok.encode(m.as_tokens(tok))
            return len(mazes)

        run_ref()
        result["reference"] = {"n_mazes": ref_mazes, **timed(run_ref, repeats)}
        result["ratio"] = result["ours"]["per_s"] / result["reference"]["per_s"]
        result["ratio_cpu"] = result["ours"]["per_cpu_s"] / result["reference"]["per_cpu_s"]
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mazesearch.bench data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/bench/data.json")
    ap.add_argument("--sizes", type=int, nargs="+", default=[6, 10])
    ap.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply our mazes per run")
    ap.add_argument("--ref-max-mazes", type=int, default=300)
    ap.add_argument("--ref-seconds", type=float, default=0.7, help="cap per reference repeat")
    ap.add_argument("--no-reference", action="store_true", help="skip maze-dataset")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (numbers meaningless)")
    args = ap.parse_args(argv)
    if args.quick:
        args.scale, args.repeats, args.ref_max_mazes, args.ref_seconds = 0.01, 1, 20, 0.1
    reference = not args.no_reference
    if reference:
        try:
            import maze_dataset  # noqa: F401
        except ImportError:
            print("maze-dataset is not installed (pip install -e '.[bench]'): skipping the reference")
            reference = False

    machine = machine_info()  # load average before the run; the end one is added below
    t0 = time.perf_counter()
    rows = []
    for grid_n in args.sizes:
        for gen in args.generators:
            options, ctor = GENERATORS[gen]
            row = {"generator": gen, "grid_n": grid_n, "options": options,
                   "ours": measure_ours(gen, grid_n, options, _n_ours(grid_n, args.scale), args.repeats)}
            if reference and ctor is not None:
                row["reference"] = measure_reference(ctor, grid_n, options, args.ref_max_mazes,
                                                     args.ref_seconds, args.repeats)
                row["ratio"] = row["ours"]["per_s"] / row["reference"]["per_s"]
                row["ratio_cpu"] = row["ours"]["per_cpu_s"] / row["reference"]["per_cpu_s"]
            rows.append(row)
            ref_txt = f"  maze-dataset {row['reference']['per_s']:9.0f}/s  ratio {row['ratio']:6.1f}x" \
                if "reference" in row else ""
            print(f"{gen:>18} {grid_n:>2}x{grid_n:<2} ours {row['ours']['per_s']:9.0f}/s{ref_txt}", flush=True)

    tokenize = measure_tokenize(6, _n_ours(6, args.scale), args.repeats, reference,
                                args.ref_max_mazes)
    ref_txt = f"  maze-dataset {tokenize['reference']['per_s']:9.0f}/s  ratio {tokenize['ratio']:6.1f}x" \
        if reference else ""
    print(f"{'tokenize+write':>18}  6x6  ours {tokenize['ours']['per_s']:9.0f}/s{ref_txt}")

    dfs6 = next((r for r in rows if r["generator"] == "dfs" and r["grid_n"] == 6), None)
    doc = {
        "benchmark": "data",
        "unit": "solved mazes per second (per_s: wall clock; per_cpu_s: per CPU second of this process)",
        "machine": machine | {"load_average_1m_end": os.getloadavg()[0]},
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"reference": reference},
        "build_mazes": rows,
        "tokenize": tokenize,
        "target": {
            "dfs_6x6_per_s": TARGET_DFS_6X6,
            "measured_per_s": dfs6["ours"]["per_s"] if dfs6 else None,
            "met": bool(dfs6 and dfs6["ours"]["per_s"] >= TARGET_DFS_6X6),
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_report(args.out, doc)
    print(f"wrote {args.out} ({doc['seconds']} s)")
