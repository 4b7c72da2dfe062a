"""Stage dynamics: probes on every training snapshot beside the exact-path rate.

    models/snapshots/step_*/ + data/{mazes,tokens}/<activations.dataset>.parquet ->
        reports/dynamics/metrics.json   the headline (DVC metric): the step at which the
                                        exact-path rate and each probe make half their rise,
                                        and each probe's lead in steps (mazesearch.interp.dynamics)
        reports/dynamics/curve.csv      step, exact_path, one column per probe (a DVC plot)
        reports/dynamics/details.json   per snapshot: each probe's val-chosen layer and score;
                                        each curve's rise from step 0 to its maximum
        reports/dynamics/dynamics.png   the curves
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from mazesearch.data.maze import read_mazes
from mazesearch.data.tokens import Vocab, read_tokens
from mazesearch.io import InputError, StageError, atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import ActivationsSpec, DynamicsSpec, ProbesSpec, load_params_or_exit


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--snapshots-dir", default="models/snapshots")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--tokens-dir", default="data/tokens")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out-dir", default="reports/dynamics")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec, acts = params.dynamics or DynamicsSpec(), params.activations or ActivationsSpec()
    vocab = Vocab.from_json(args.vocab)
    mazes = read_mazes(Path(args.mazes_dir) / f"{acts.dataset}.parquet")
    tokens = read_tokens(Path(args.tokens_dir) / f"{acts.dataset}.parquet", vocab=vocab)
    if spec.n_mazes > len(tokens):
        raise StageError(f"dynamics.n_mazes={spec.n_mazes} exceeds the {len(tokens)} mazes of datasets.{acts.dataset}")
    snaps = sorted(p for p in Path(args.snapshots_dir).glob("step_*") if re.fullmatch(r"step_\d+", p.name))
    if len(snaps) < 2:
        raise InputError(args.snapshots_dir, f"holds {len(snaps)} snapshots; dynamics needs at least 2",
                         "set train.n_snapshots >= 2 and rerun `dvc repro train`")

    from mazesearch.interp.activations import extract_activations
    from mazesearch.interp.dynamics import curve_csv, rises, snapshot_row, summarize
    from mazesearch.model.device import set_threads
    from mazesearch.model.run_loader import control_model
    from mazesearch.model.gpt import load_gpt
    from mazesearch.viz.charts import render_interval_lines

    set_threads(acts.num_threads)
    steps, rows = [], []
    models = [load_gpt(snap, vocab=vocab, vocab_path=args.vocab).eval() for snap in snaps]
    control = control_model(models[0], acts.control_seed)
    with tempfile.TemporaryDirectory() as tmp:  # the control's activations: the same for every snapshot
        control_store = extract_activations(control, tokens, vocab, mazes.grid_n, Path(tmp) / "random",
                                            n_mazes=spec.n_mazes, batch_size=acts.batch_size)
        for snap, model in zip(snaps, models):
            rows.append(snapshot_row(model, control_store, tokens, mazes, vocab, list(spec.probes),
                                     params.probes or ProbesSpec(), spec.n_mazes, acts.batch_size))
            steps.append(int(snap.name.split("_")[1]))
            print(f"dynamics step {steps[-1]}: exact {rows[-1]['exact_path']:.3f}, "
                  + ", ".join(f"{p} {rows[-1][p]}" for p in spec.probes), flush=True)

    probes = list(spec.probes)
    with atomic_dir(args.out_dir) as out:
        metrics = summarize(steps, rows, probes)
        write_json_atomic(out / "metrics.json", metrics)
        write_text_atomic(out / "curve.csv", curve_csv(steps, rows, probes))
        write_json_atomic(out / "details.json", {"steps": steps, "snapshots": rows, "dataset": acts.dataset,
                                                  "n_mazes": spec.n_mazes, "rise": rises(rows, ["exact_path", *probes])})
        nan = float("nan")
        series = {name: (steps, [nan if r[name] is None else r[name] for r in rows],
                         [nan if r[name] is None else r[name] for r in rows],
                         [nan if r[name] is None else r[name] for r in rows]) for name in ["exact_path", *probes]}
        render_interval_lines(series, out / "dynamics.png", title="probe score (test) and exact path vs step",
                              xlabel="training step", ylabel="score")
    print("dynamics: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
