"""A candidate training recipe, measured end to end in one process, to choose defaults by.

``python -m mazesearch.bench recipe NAME [--set KEY=VALUE ...] [--suites a,b,...]`` reads
params.yaml, applies the ``--set`` overrides (dotted keys, YAML values, like ``dvc exp run -S``),
builds the training, validation and suite datasets exactly as stages generate/tokenize would
(same seeds, train exclusion), trains with the params' model and train sections, evaluates the
chosen suites (default: every suite) with the random-at-forks baseline, and writes
``reports/bench/recipe-NAME.json``: wall minutes of data, training and evaluation, train tokens/s,
and per suite the exact-path rate of model and baseline with 95% Wilson intervals (with
``train.position_ids: random``, also the model's rate at random position ids, the training scheme). Nothing under
data/, models/ or reports/ other than that file is touched: it is a measurement, not a run.
``--checkpoint-dir DIR`` keeps the resumable training state there (a killed run resumes) and,
with ``--track``, scores every weight snapshot (``train.n_snapshots``) on each suite: the JSON's
``snapshots`` curve (n+1 dips, then recovers, as training goes on).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from mazesearch.bench import machine_info, write_report


def _set(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if last not in node:
        raise SystemExit(f"error: --set {dotted}: no such key in params.yaml")
    node[last] = value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--suites", help="comma-separated suites to evaluate (default: all)")
    ap.add_argument("--checkpoint-dir", help="keep resumable training state and the weight snapshots here "
                    "(a killed run resumes; default: none)")
    ap.add_argument("--track", action="store_true",
                    help="also score every weight snapshot (train.n_snapshots) on each suite, teacher forced")
    args = ap.parse_args(argv)
    if args.track and not args.checkpoint_dir:
        raise SystemExit("error: --track needs --checkpoint-dir (the snapshots are written there)")

    from mazesearch.params import parse_params

    raw = yaml.safe_load(Path(args.params).read_text())
    for item in args.set:
        key, _, value = item.partition("=")
        _set(raw, key, yaml.safe_load(value))
    p = parse_params(raw)
    suites = args.suites.split(",") if args.suites else list(p.evaluate.suites)

    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.tokens import TokenizerOptions, Vocab, encode
    from mazesearch.evaluation.suite import evaluate_suite
    from mazesearch.model.train import train
    from mazesearch.params import suite_tokenizer

    t0 = time.perf_counter()
    vocab = Vocab.build(p.tokenizer.max_grid_n)
    opts = TokenizerOptions(**{k: v for k, v in p.tokenizer.model_dump().items() if k != "max_grid_n"})
    train_batch, train_info = build_mazes(**p.datasets["train"].model_dump())
    batches = {"train": train_batch}
    for name in {"val", *(p.evaluate.suites[s].dataset for s in suites)} - {"train"}:
        batches[name], _ = build_mazes(**p.datasets[name].model_dump(), exclude_ids=train_batch.maze_id)
    data_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    result = train(p.model, p.train, encode(train_batch, vocab, opts), encode(batches["val"], vocab, opts), vocab,
                   checkpoint_dir=args.checkpoint_dir, progress=False)
    train_s = time.perf_counter() - t1

    t2 = time.perf_counter()
    model = result.model.to("cpu").eval()
    opts_of = lambda suite: TokenizerOptions(**suite_tokenizer(p, suite))  # noqa: E731
    rows = {}
    for suite in suites:
        batch = _suite_mazes(p, batches, suite)
        report = evaluate_suite(model, batch, vocab, opts_of(suite),
                                baseline_seed=p.evaluate.baseline_seed, batch_size=p.evaluate.batch_size).report
        ci = report["exact_path_ci95"]
        rows[suite] = {"grid_n": report["grid_n"], "n_mazes": report["n_mazes"], "feedable": report["feedable"],
                       "model_exact": report["model"]["exact_path"] if report["feedable"] else None,
                       "model_ci95": [ci["model"]["low"], ci["model"]["high"]] if report["feedable"] else None,
                       "baseline_exact": report["baseline"]["exact_path"],
                       "baseline_ci95": [ci["baseline"]["low"], ci["baseline"]["high"]]}
        if p.train.position_ids == "random" and report["feedable"]:  # the training scheme at evaluation too
            rows[suite]["model_exact_random_positions"] = _exact_at_random_positions(model, p, batch, vocab, opts_of(suite))
        print(f"  {suite}: model {rows[suite]['model_exact']}, baseline {rows[suite]['baseline_exact']:.3f}"
              + (f", at random position ids {rows[suite]['model_exact_random_positions']:.3f}"
                 if "model_exact_random_positions" in rows[suite] else ""), flush=True)
    snapshots = _track(Path(args.checkpoint_dir), p, suites, batches, vocab, opts_of) if args.track else None
    eval_s = time.perf_counter() - t2
    doc = {"benchmark": "recipe", "name": args.name, "overrides": args.set,
           "train_data": train_info, "minutes": {"data": data_s / 60, "train": train_s / 60, "evaluate": eval_s / 60},
           "train_tokens_per_s": result.tokens_per_s, "train_padding_frac": result.padding_frac,
           "val": result.metrics, "suites": rows, "snapshots": snapshots, "machine": machine_info()}
    write_report(f"reports/bench/recipe-{args.name}.json", doc)
    print(f"recipe {args.name}: train {train_s / 60:.1f} min at {result.tokens_per_s:.0f} tokens/s, "
          f"val exact {result.metrics['val_exact_path']:.3f} -> reports/bench/recipe-{args.name}.json")


def _suite_mazes(p, batches: dict, suite: str):
    """The mazes suite ``suite`` evaluates: its dataset's, the first ``n_mazes`` when set."""
    import numpy as np

    spec = p.evaluate.suites[suite]
    batch = batches[spec.dataset]
    return batch if spec.n_mazes is None else batch.take(np.arange(min(spec.n_mazes, len(batch))))


def _track(checkpoint_dir: Path, p, suites, batches, vocab, opts_of) -> list[dict]:
    """Per weight snapshot (step order): its teacher-forced exact-path rate on each suite (the
    same as greedy decoding's, model/train.py). n+1 is not monotonic in training: this is its curve."""
    import numpy as np

    from mazesearch.data.tokens import encode
    from mazesearch.model.gpt import load_gpt
    from mazesearch.model.checkpoints import SNAPSHOTS
    from mazesearch.model.train import evaluate_teacher_forced

    tokens = {suite: encode(_suite_mazes(p, batches, suite), vocab, opts_of(suite)) for suite in suites}
    out = []
    for snap in sorted((checkpoint_dir / SNAPSHOTS).glob("step_*")):
        model = load_gpt(snap).eval()
        row = {"step": int(snap.name.split("_")[1])}
        for suite, tb in tokens.items():
            if int(tb.lengths.max()) > model.cfg.n_ctx:
                continue  # a suite longer than the context: the evaluation marks it unfeedable
            row[suite] = evaluate_teacher_forced(model, tb, np.arange(len(tb)), vocab.pad_id,
                                                 p.evaluate.batch_size)["exact_path"]
        out.append(row)
        print("  snapshot " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              flush=True)
    return out


def _exact_at_random_positions(model, p, batch, vocab, opts) -> float:
    """Teacher-forced exact-path rate (= greedy exact, model/train.py) with the training scheme's
    random sorted position ids (seed train.seed, range train.max_position or n_ctx)."""
    from mazesearch.data.tokens import encode
    from mazesearch.model.train import evaluate_teacher_forced

    import numpy as np

    tokens = encode(batch, vocab, opts)
    max_position = p.train.max_position or model.cfg.n_ctx
    return evaluate_teacher_forced(model, tokens, np.arange(len(tokens)), vocab.pad_id, p.evaluate.batch_size,
                                   random_positions_from=(p.train.seed, max_position))["exact_path"]


if __name__ == "__main__":
    main()
