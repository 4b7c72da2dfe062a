"""Stage evaluate@<suite>: the trained model and the random baseline on one evaluation suite.

    data/mazes/<dataset>.parquet + data/vocab.json + models/ ->
        data/predictions/<suite>.parquet   maze_id, predicted tokens and path, every metric,
                                           the baseline's path and metrics (prefix baseline_)
        reports/eval/suites/<suite>.json   the headline (DVC metric): exact-path rates of model
                                           and baseline with 95% intervals, valid path, first
                                           fork, feedable, leakage
        reports/eval/details/<suite>.json  everything else: means of every metric, model and
                                           baseline, tokenizer options, feedability, n_ctx, ...

Pictures are drawn from the predictions by stage pictures, so picture params never rerun this.

The suite's tokenizer options are params ``tokenizer.*`` overridden by
``evaluate.suites.<suite>.tokenizer``; the same ``encode`` as stage tokenize, so with no
override the sequences are exactly data/tokens/<dataset>.parquet's. A suite the model cannot
read still gets the baseline, with ``feedable: false`` and the reason (mazesearch.evaluation.suite).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mazesearch.data.maze import read_maze_ids, read_mazes, write_parquet_atomic
from mazesearch.data.tokens import TokenizerOptions, Vocab
from mazesearch.io import InputError, stage_main, write_json_atomic
from mazesearch.params import load_params_or_exit, require_section, suite_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="suite name (a key of evaluate.suites in params.yaml)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--predictions-dir", default="data/predictions")
    ap.add_argument("--reports-dir", default="reports/eval/suites", help="headline metrics")
    ap.add_argument("--details-dir", default="reports/eval/details")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    ev = require_section(params, "evaluate", "evaluate")
    if args.suite not in ev.suites:
        raise InputError(args.params, f"suite {args.suite!r} is not in evaluate.suites (have: {', '.join(ev.suites)})")
    spec = ev.suites[args.suite]
    mazes_dir = Path(args.mazes_dir)
    batch = read_mazes(mazes_dir / f"{spec.dataset}.parquet")
    if spec.n_mazes is not None:
        batch = batch.take(np.arange(min(spec.n_mazes, len(batch))))
    opts = TokenizerOptions(**suite_tokenizer(params, args.suite))
    vocab = Vocab.from_json(args.vocab)
    leakage = int(np.isin(batch.maze_id, read_maze_ids(mazes_dir / "train.parquet")).sum())

    # after the cheap checks: a bad suite name fails fast
    from mazesearch.evaluation.suite import evaluate_suite, headline, rounded
    from mazesearch.model.device import resolve_device, set_threads
    from mazesearch.model.gpt import load_gpt

    set_threads(ev.num_threads)
    device = resolve_device(ev.device, "evaluate.device")
    print(f"evaluate {args.suite}: device {device}, {ev.num_threads} threads")
    model = load_gpt(args.model_dir, device=device, vocab=vocab, vocab_path=args.vocab)
    result = evaluate_suite(model, batch, vocab, opts, baseline_seed=ev.baseline_seed, batch_size=ev.batch_size)

    write_parquet_atomic(result.table, Path(args.predictions_dir) / f"{args.suite}.parquet")
    r = result.report
    details = rounded({"suite": args.suite, "dataset": spec.dataset, **r, "leakage": leakage})
    write_json_atomic(Path(args.details_dir) / f"{args.suite}.json", details)
    write_json_atomic(Path(args.reports_dir) / f"{args.suite}.json", headline(details))

    model_txt = f"model exact {r['model']['exact_path']:.3f}" if r["feedable"] else f"not feedable ({r['reason']})"
    print(f"evaluate {args.suite}: {len(batch)} mazes, {model_txt}, baseline exact "
          f"{r['baseline']['exact_path']:.3f}, leakage {leakage}")
    if leakage and spec.dataset != "train":
        print(f"warning: {leakage} mazes of suite {args.suite} are in the training set")


if __name__ == "__main__":
    stage_main(main)
