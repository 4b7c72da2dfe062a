"""Stages as DVC runs them against the library call in a fresh process: the thread-clash guard.

``python -m mazesearch.bench stages [--quick] [--repo-suites]`` builds a small workspace in a
temp directory (the default profile's train/val/test datasets, cut down; one suite of 500 test
mazes; a short training run of the default model shape), then times whole processes, start-up
included, medians over repeats:

* ``evaluate_stage``: ``python -m stages.evaluate test``, exactly the command in dvc.yaml;
* ``evaluate_library``: a fresh ``python -c`` that imports torch first, then reads the same
  files and calls :func:`mazesearch.evaluation.suite.evaluate_suite` (the reference: no numba
  kernel can run before torch there);
* ``evaluate_stage_clash``: the stage with ``NUMBA_THREADING_LAYER=omp`` forced, the setup the
  guard in ``mazesearch/data/jit.py`` prevents (shows what it is worth);
* ``train_stage`` vs ``train_library``: the same for ``python -m stages.train`` on a fixed small
  config (``TRAIN_STEPS`` steps).

Ratios stage / library should stay near 1 (target ≤ 1.3). With ``--repo-suites`` it also times
``python -m stages.evaluate <suite>`` for every suite of the repository's own params.yaml with its
trained ``models/`` (outputs to a temp dir), in seconds per 500 mazes. Writes
``reports/bench/stages.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mazesearch.bench import machine_info, write_report

ROOT = Path(__file__).resolve().parents[2]
TRAIN_STEPS = 150
N_EVAL = 500

_EVAL_LIBRARY = """
import torch  # first: no numba kernel runs before torch in the reference
from pathlib import Path
import numpy as np
from mazesearch.data.maze import read_mazes
from mazesearch.data.tokens import TokenizerOptions, Vocab
from mazesearch.evaluation.suite import evaluate_suite
from mazesearch.model.device import set_threads
from mazesearch.model.gpt import load_gpt
from mazesearch.params import load_params, suite_tokenizer
p = load_params("params.yaml")
set_threads(p.evaluate.num_threads)
batch = read_mazes("data/mazes/test.parquet")
batch = batch.take(np.arange(min(p.evaluate.suites["test"].n_mazes or len(batch), len(batch))))
vocab = Vocab.from_json("data/vocab.json")
model = load_gpt("models", device="cpu", vocab=vocab, vocab_path="data/vocab.json")
evaluate_suite(model, batch, vocab, TokenizerOptions(**suite_tokenizer(p, "test")),
               baseline_seed=p.evaluate.baseline_seed, batch_size=p.evaluate.batch_size)
"""

_TRAIN_LIBRARY = """
import torch  # first, as above
from mazesearch.data.tokens import Vocab, read_tokens
from mazesearch.model.train import train
from mazesearch.params import load_params
p = load_params("params.yaml")
vocab = Vocab.from_json("data/vocab.json")
tr, va = read_tokens("data/tokens/train.parquet", vocab=vocab), read_tokens("data/tokens/val.parquet", vocab=vocab)
train(p.model, p.train, tr, va, vocab, progress=False)
"""


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def _run(args: list[str], cwd: Path, **env) -> float:
    """Wall seconds of one whole process (start-up included); fails loudly."""
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return wall


def _median(args, cwd, repeats, **env) -> dict:
    walls = [_run(args, cwd, **env) for _ in range(repeats)]
    return {"wall_s": statistics.median(walls), "wall_s_repeats": [round(w, 2) for w in walls]}


def _workspace(work: Path, params_path: Path, n_train: int) -> None:
    """A cut-down default profile in ``work``: data and tokens built by the real stages."""
    raw = yaml.safe_load(params_path.read_text())
    keep = ("train", "val", "test")
    raw["datasets"] = {k: raw["datasets"][k] for k in keep}
    raw["datasets"]["train"]["n_mazes"] = n_train
    raw["datasets"]["test"]["n_mazes"] = max(N_EVAL, raw["datasets"]["test"]["n_mazes"])
    test_suite = raw["evaluate"]["suites"]["test"]
    raw["evaluate"]["suites"] = {"test": {**test_suite, "n_mazes": N_EVAL}}
    raw["evaluate"]["size_suites"] = []
    raw["activations"]["dataset"] = "test"  # only train, val and test exist in the workspace
    raw["train"].update(max_steps=TRAIN_STEPS, warmup_steps=10, eval_every=TRAIN_STEPS, checkpoint_every=TRAIN_STEPS)
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    py = sys.executable
    for name in keep:
        _run([py, "-m", "stages.generate", name], work)
    _run([py, "-m", "stages.vocab"], work)
    for name in keep:
        _run([py, "-m", "stages.tokenize", name], work)


def _repo_suites(repeats: int) -> dict:
    """Seconds per 500 mazes of ``python -m stages.evaluate <suite>`` on the repository's run."""
    from mazesearch.data.maze import read_maze_ids
    from mazesearch.params import load_params

    p = load_params(ROOT / "params.yaml")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for suite, spec in p.evaluate.suites.items():
            n = len(read_maze_ids(ROOT / "data" / "mazes" / f"{spec.dataset}.parquet"))
            n = min(n, spec.n_mazes or n)
            t = _median([sys.executable, "-m", "stages.evaluate", suite, "--predictions-dir", tmp,
                         "--reports-dir", tmp, "--details-dir", tmp], ROOT, repeats)
            out[suite] = {**t, "n_mazes": n, "s_per_500_mazes": t["wall_s"] * 500 / max(n, 1)}
            print(f"  evaluate {suite}: {t['wall_s']:.1f} s for {n} mazes", flush=True)
        # the suite issue 18 measured at ~50 s, with numba forced back onto OpenMP
        clash_suite = "wilson" if "wilson" in p.evaluate.suites else next(iter(p.evaluate.suites))
        clash = _median([sys.executable, "-m", "stages.evaluate", clash_suite, "--predictions-dir", tmp,
                         "--reports-dir", tmp, "--details-dir", tmp], ROOT, 1, NUMBA_THREADING_LAYER="omp")
        out["_clash"] = {"suite": clash_suite, **clash, "ratio_vs_workqueue": clash["wall_s"] / out[clash_suite]["wall_s"]}
        print(f"  evaluate {clash_suite} with numba on OpenMP: {clash['wall_s']:.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat, a smaller training set")
    ap.add_argument("--repo-suites", action="store_true",
                    help="also time every suite of ./params.yaml with the trained models/ (needs `dvc repro`)")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default="reports/bench/stages.json")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else 3
    py = sys.executable
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _workspace(work, Path(args.params), 5_000 if args.quick else 20_000)
        print("stages: workspace ready", flush=True)
        results["train_stage"] = _median([py, "-m", "stages.train"], work, 1)
        results["train_library"] = _median([py, "-c", _TRAIN_LIBRARY], work, 1)
        print(f"  train: stage {results['train_stage']['wall_s']:.1f} s, library "
              f"{results['train_library']['wall_s']:.1f} s", flush=True)
        results["evaluate_stage"] = _median([py, "-m", "stages.evaluate", "test"], work, repeats)
        results["evaluate_library"] = _median([py, "-c", _EVAL_LIBRARY], work, repeats)
        results["evaluate_stage_clash"] = _median([py, "-m", "stages.evaluate", "test"], work, 1,
                                                  NUMBA_THREADING_LAYER="omp")
        print(f"  evaluate: stage {results['evaluate_stage']['wall_s']:.1f} s, library "
              f"{results['evaluate_library']['wall_s']:.1f} s, stage with numba on OpenMP "
              f"{results['evaluate_stage_clash']['wall_s']:.1f} s", flush=True)
    ev, tr = results["evaluate_stage"]["wall_s"], results["train_stage"]["wall_s"]
    doc = {
        "benchmark": "stages",
        "what": "whole-process wall seconds (start-up included): the stage as DVC runs it vs the "
                "library call in a fresh process that imports torch first",
        "n_eval_mazes": N_EVAL, "train_steps": TRAIN_STEPS, "repeats": repeats,
        "results": results,
        "ratio_evaluate_stage_vs_library": ev / results["evaluate_library"]["wall_s"],
        "ratio_train_stage_vs_library": tr / results["train_library"]["wall_s"],
        "ratio_evaluate_clash_vs_stage": results["evaluate_stage_clash"]["wall_s"] / ev,
        "evaluate_s_per_500_mazes": ev * 500 / N_EVAL,
        "machine": machine_info(),
    }
    if args.repo_suites:
        doc["repo_suites"] = _repo_suites(repeats)
    write_report(args.out, doc)
    print(f"stages: evaluate stage/library {doc['ratio_evaluate_stage_vs_library']:.2f}x, train stage/library "
          f"{doc['ratio_train_stage_vs_library']:.2f}x, numba-on-OpenMP stage {doc['ratio_evaluate_clash_vs_stage']:.1f}x "
          f"slower -> {args.out}")


if __name__ == "__main__":
    main()
