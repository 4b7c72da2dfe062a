"""Stage evaluate@<suite>: the trained model and the random baseline on one evaluation suite.

    data/mazes/<dataset>.parquet + data/vocab.json + models/ ->
        data/predictions/<suite>.parquet   maze_id, predicted tokens and path, every metric,
                                           the baseline's path and metrics (prefix baseline_)
        reports/eval/<suite>.json          means of every metric, model and baseline, leakage
        reports/eval/pictures/<suite>.png  sample mazes with predicted paths, failures first

The suite's tokenizer options are params ``tokenizer.*`` overridden by
``evaluate.suites.<suite>.tokenizer``; the same ``encode`` as stage tokenize, so with no
override the sequences are exactly data/tokens/<dataset>.parquet's. A suite the model cannot
read (grid larger than the vocabulary, or sequences longer than n_ctx with learned positions)
still gets the baseline, with ``feedable: false`` and the reason. Metric definitions:
docs/metrics.md. Evaluation never imports transformer_lens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mazesearch.baseline import baseline_fork_choices, baseline_walks
from mazesearch.logger import write_text_atomic
from mazesearch.maze import MazeBatch, read_mazes, write_parquet_atomic
from mazesearch.metrics import BOOL_METRICS, COUNT_METRICS, METRICS, Walks, aggregate, compute_metrics
from mazesearch.params import Params, load_params_or_exit
from mazesearch.tokens import TokenBatch, TokenizerOptions, Vocab, encode, sequence_lengths


def suite_options(params: Params, suite: str) -> TokenizerOptions:
    """params ``tokenizer.*`` with the suite's overrides applied."""
    base = params.tokenizer
    over = params.evaluate.suites[suite].tokenizer
    pick = lambda key: getattr(over, key) if getattr(over, key) is not None else getattr(base, key)  # noqa: E731
    return TokenizerOptions(coord=pick("coord"), edges=pick("edges"), edge_order=pick("edge_order"), seed=pick("seed"))


def feedability(batch: MazeBatch, vocab: Vocab, opts: TokenizerOptions, model_cfg) -> tuple[bool, str | None, int]:
    """(feedable, reason, longest sequence) of a suite for a model config (``ModelConfig``)."""
    n_open = batch.open.sum(axis=1, dtype=np.int64)
    n_listed = batch.open.shape[1] - n_open if opts.edges == "walls" else n_open
    _, total = sequence_lengths(n_listed, np.diff(batch.path_offsets), opts.coord)
    longest = int(total.max()) if len(batch) else 0
    if batch.grid_n > vocab.max_grid_n:
        return False, f"grid_n={batch.grid_n} exceeds the vocabulary's max_grid_n={vocab.max_grid_n}", longest
    if model_cfg.positional == "learned" and longest > model_cfg.n_ctx:
        return False, (f"sequences up to {longest} tokens exceed the model's n_ctx={model_cfg.n_ctx} "
                       "(learned positions)"), longest
    return True, None, longest


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.6g}")
    return value


def _list_column(cells: list, dtype) -> pa.Array:
    offsets = np.zeros(len(cells) + 1, dtype=np.int32)
    np.cumsum([len(c) for c in cells], out=offsets[1:])
    flat = np.concatenate([np.asarray(c) for c in cells]) if cells else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(dtype)))


def _walk_lists(walks: Walks) -> list[np.ndarray]:
    return [walks.walk(i) for i in range(len(walks))]


def _metric_columns(metrics: dict | None, prefix: str, B: int) -> dict[str, pa.Array]:
    cols = {}
    for name in METRICS:
        kind = pa.bool_() if name in BOOL_METRICS else pa.int32() if name in COUNT_METRICS else pa.float64()
        cols[prefix + name] = pa.nulls(B, kind) if metrics is None else pa.array(metrics[name], kind)
    return cols


def predictions_table(batch, generated, model_walks, model_metrics, base_walks, base_metrics) -> pa.Table:
    B = len(batch)
    cols = {"maze_id": pa.array(batch.maze_id.astype(np.uint64))}
    if model_metrics is None:
        cols["predicted_tokens"] = pa.nulls(B, pa.list_(pa.uint16()))
        cols["predicted_path"] = pa.nulls(B, pa.list_(pa.int16()))
    else:
        cols["predicted_tokens"] = _list_column(generated, np.uint16)
        cols["predicted_path"] = _list_column(_walk_lists(model_walks), np.int16)
    cols.update(_metric_columns(model_metrics, "", B))
    cols["baseline_path"] = _list_column(_walk_lists(base_walks), np.int16)
    cols.update(_metric_columns(base_metrics, "baseline_", B))
    return pa.table(cols)


def picture_rows(failed: np.ndarray, n_pictures: int) -> np.ndarray:
    """Up to n_pictures row indices: failures first, then successes, each in file order."""
    order = np.concatenate([np.flatnonzero(failed), np.flatnonzero(~failed)])
    return order[:n_pictures]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", help="suite name (a key of evaluate.suites in params.yaml)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--predictions-dir", default="data/predictions")
    ap.add_argument("--reports-dir", default="reports/eval/suites")
    ap.add_argument("--pictures-dir", default="reports/eval/pictures")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    if params.evaluate is None:
        raise SystemExit(f"error: {args.params} has no `evaluate` section (needed by stage evaluate)")
    if args.suite not in params.evaluate.suites:
        raise SystemExit(f"error: suite {args.suite!r} is not in evaluate.suites "
                         f"(have: {', '.join(params.evaluate.suites)})")
    ev, spec = params.evaluate, params.evaluate.suites[args.suite]
    mazes_dir = Path(args.mazes_dir)
    batch = read_mazes(mazes_dir / f"{spec.dataset}.parquet")
    if spec.n_mazes is not None:
        batch = batch.take(np.arange(min(spec.n_mazes, len(batch))))
    opts = suite_options(params, args.suite)
    vocab = Vocab.from_json(args.vocab)
    train_path = mazes_dir / "train.parquet"
    if not train_path.exists():
        raise SystemExit(f"error: {train_path} is missing (needed to count leakage; run `dvc repro generate@train`)")
    train_ids = pq.read_table(train_path, columns=["maze_id"])["maze_id"].to_numpy()
    leakage = int(np.isin(batch.maze_id, train_ids).sum())

    import torch  # after the cheap checks: a bad suite name fails fast

    from mazesearch.model import GPT, load_gpt
    from mazesearch.rollout import predict

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_gpt(args.model_dir, device=device)
    feedable, reason, longest = feedability(batch, vocab, opts, model.cfg)
    trained_cfg = model.cfg

    base_walks = baseline_walks(batch, ev.baseline_seed)
    base_metrics = compute_metrics(batch, base_walks, baseline_fork_choices(batch, ev.baseline_seed))
    generated, model_walks, model_metrics = None, None, None
    if feedable:
        if model.cfg.positional == "rotary" and longest > model.cfg.n_ctx:
            # rotary has no position table: the same weights read any length
            longer = GPT(dataclasses.replace(model.cfg, n_ctx=longest))
            longer.load_state_dict(model.state_dict())
            model = longer.to(device)
        model.eval()
        tokens: TokenBatch = encode(batch, vocab, opts)
        generated, model_walks, forks = predict(model, tokens, batch, vocab, opts.coord, ev.batch_size)
        model_metrics = compute_metrics(batch, model_walks, forks)

    write_parquet_atomic(
        predictions_table(batch, generated, model_walks, model_metrics, base_walks, base_metrics),
        Path(args.predictions_dir) / f"{args.suite}.parquet",
    )
    model_agg = aggregate(model_metrics) if feedable else None
    base_agg = aggregate(base_metrics)
    report = {
        "suite": args.suite, "dataset": spec.dataset, "generator": batch.generator,
        "grid_n": batch.grid_n, "n_mazes": len(batch),
        "tokenizer": dataclasses.asdict(opts),
        "feedable": feedable, "reason": reason, "longest_sequence": longest,
        "model_n_ctx": trained_cfg.n_ctx, "positional": trained_cfg.positional,
        "leakage": leakage,
        "model_exact": model_agg["exact_path"] if feedable else None,
        "baseline_exact": base_agg["exact_path"],
        "model": model_agg, "baseline": base_agg,
    }
    reports = Path(args.reports_dir)
    write_text_atomic(reports / f"{args.suite}.json", json.dumps(_rounded(report), indent=2) + "\n")

    if ev.n_pictures > 0 and len(batch):
        from mazesearch.render import render_mazes

        shown = model_walks if feedable else base_walks
        failed = ~(model_metrics if feedable else base_metrics)["exact_path"]
        idx = picture_rows(failed, ev.n_pictures)
        who = "" if feedable else " (baseline)"
        titles = [f"#{i}: {int(batch.forks_on_path[i])} forks{who}" for i in idx]
        render_mazes(batch, idx, Path(args.pictures_dir) / f"{args.suite}.png",
                     predicted=[shown.walk(i).tolist() for i in idx], failed=failed[idx], titles=titles)

    model_txt = f"model exact {model_agg['exact_path']:.3f}" if feedable else f"not feedable ({reason})"
    print(f"evaluate {args.suite}: {len(batch)} mazes, {model_txt}, baseline exact "
          f"{base_agg['exact_path']:.3f}, leakage {leakage}")
    if leakage and spec.dataset != "train":
        print(f"warning: {leakage} mazes of suite {args.suite} are in the training set")


if __name__ == "__main__":
    main()
