"""One evaluation suite: the trained model and the random baseline on one dataset.

The stage (``stages/evaluate.py``) reads files and params; everything between those lives here:
whether the model can read the suite at all (feedability), the rollout, the metrics, the
per-maze Arrow table and the two reports: the headline (a DVC metric, a few numbers per suite)
and the details (everything else). Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, sequence_lengths
from mazesearch.evaluation.baseline import baseline_fork_choices, baseline_walks
from mazesearch.evaluation.metrics import BOOL_METRICS, COUNT_METRICS, METRICS, Walks, aggregate, compute_metrics
from mazesearch.evaluation.stats import wilson_interval
from mazesearch.model.gpt import GPT, ModelConfig, with_context  # noqa: F401  (with_context: importers of this module)


def feedability(batch: MazeBatch, vocab: Vocab, opts: TokenizerOptions, model_cfg: ModelConfig) -> tuple[bool, str | None, int]:
    """(feedable, reason, longest sequence) of a suite for a model config."""
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


def rounded(value):
    """Floats to 6 significant digits (NaN -> None), recursively: diffs show real changes only."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
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
    """One row per maze: predicted tokens and path, every model metric, the baseline's likewise."""
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


def exact_interval(metrics: dict) -> dict:
    """``{k, n, low, high}``: exact paths, mazes, and the 95% Wilson interval of the rate k/n."""
    exact = np.asarray(metrics["exact_path"], dtype=bool)
    k, n = int(exact.sum()), int(exact.size)
    low, high = wilson_interval(k, n, 0.95)
    return {"k": k, "n": n, "low": low, "high": high}


def headline(details: dict) -> dict:
    """The suite's DVC metric (docs/metrics.md): a flat dict of the numbers worth a column in
    ``dvc metrics show``. The model's values are None (not shown) when it cannot read the suite."""
    ci = details["exact_path_ci95"]
    model, base = details["model"], details["baseline"]
    fed = details["feedable"]
    return {
        "model_exact": model["exact_path"] if fed else None,
        "model_exact_lo": ci["model"]["low"] if fed else None,
        "model_exact_hi": ci["model"]["high"] if fed else None,
        "baseline_exact": base["exact_path"],
    }  # the baseline's interval, valid-path and first-fork rates, feedable and leakage live in the
    # details (reports/eval/details/<suite>.json); null model_* already says "not feedable"


@dataclass
class SuiteResult:
    table: pa.Table  # one row per maze (predictions_table)
    report: dict  # identity, feedability, the means of every metric (model and baseline), intervals


def evaluate_suite(model: GPT, batch: MazeBatch, vocab: Vocab, opts: TokenizerOptions, *,
                   baseline_seed: int, batch_size: int) -> SuiteResult:
    """Greedy rollouts of ``model`` (when it can read the suite) and the random-at-forks baseline."""
    feedable, reason, longest = feedability(batch, vocab, opts, model.cfg)
    base_walks = baseline_walks(batch, baseline_seed)
    base_metrics = compute_metrics(batch, base_walks, baseline_fork_choices(batch, baseline_seed))
    generated, model_walks, model_metrics = None, None, None
    if feedable:
        from mazesearch.evaluation.predict import predict

        reader = with_context(model, longest).eval()
        with torch.no_grad():
            generated, model_walks, forks = predict(reader, encode(batch, vocab, opts), batch, vocab,
                                                    opts.coord, batch_size)
        model_metrics = compute_metrics(batch, model_walks, forks)
    model_agg = aggregate(model_metrics) if feedable else None
    base_agg = aggregate(base_metrics)
    report = {
        "generator": batch.generator, "grid_n": batch.grid_n, "n_mazes": len(batch),
        "tokenizer": dataclasses.asdict(opts),
        "feedable": feedable, "reason": reason, "longest_sequence": longest,
        "model_n_ctx": model.cfg.n_ctx, "positional": model.cfg.positional,
        "model": model_agg, "baseline": base_agg,
        "exact_path_ci95": {"model": exact_interval(model_metrics) if feedable else None,
                            "baseline": exact_interval(base_metrics)},
    }
    table = predictions_table(batch, generated, model_walks, model_metrics, base_walks, base_metrics)
    return SuiteResult(table=table, report=report)
