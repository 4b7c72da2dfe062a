"""Evaluation benchmark: mazes evaluated per second, cached decoding vs full recompute, one run.

``python -m mazesearch.bench evaluate [--quick]`` builds 1,000 mazes of the default profile's
test set (params.yaml ``datasets.test``, else dfs 5x5) and a randomly initialised GPT of the
params' model shape (else d_model 128, 4 layers), then times

* ``end_to_end``: what stage evaluate does per suite: encode, greedy paths and teacher-forced
  fork predictions (one key/value-cached pass), metrics, the baseline walker and its metrics;
* ``rollout_cached`` vs ``rollout_recompute``: greedy decoding alone, ours against the
  reference decoder that re-runs the whole sequence every step, on the same prompts (ratio =
  cached / recompute, and whether their tokens agree);
* ``metrics_and_baseline``: the numba scoring alone.

A random model never writes ``<PATH_END>``, so every maze decodes to the cap (grid_n**2 +
grid_n cells): the worst case; a trained model stops after ~path length. Medians over repeats.
Runs on one torch thread unless ``--threads``. Writes ``reports/bench/evaluate.json``.
"""

from __future__ import annotations

import argparse

import numpy as np

from mazesearch.bench import machine_info, profile_specs, timed, write_report

DEFAULT_MODEL = dict(d_model=128, n_layers=4, n_heads=4, d_head=32, d_mlp=512, act_fn="gelu",
                     normalization="LN", positional="learned", seed=0)
DEFAULT_DATASET = dict(generator="dfs", grid_n=5, seed=3)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer mazes and repeats (smoke run)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/bench/evaluate.json")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a busy 2-core machine 2 threads spin and lose)")
    args = ap.parse_args(argv)

    import torch

    if args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)

    from mazesearch.evaluation.baseline import baseline_fork_choices, baseline_walks
    from mazesearch.data.dataset import build_mazes
    from mazesearch.evaluation.metrics import compute_metrics
    from mazesearch.model.gpt import GPT, ModelConfig
    from mazesearch.evaluation.predict import predict
    from mazesearch.evaluation.rollout import greedy_rollout, greedy_rollout_cached
    from mazesearch.data.tokens import TokenizerOptions, Vocab, encode

    n_mazes, n_ref, repeats, batch_size = (100, 16, 1, 256) if args.quick else (1000, 64, 3, 256)
    dataset, model_spec, tok = profile_specs(args.params, "test", DEFAULT_DATASET, DEFAULT_MODEL)
    batch, _ = build_mazes(n_mazes=n_mazes, **dataset)
    vocab = Vocab.build(tok["max_grid_n"])
    opts = TokenizerOptions(coord=tok.get("coord", "unary"), edges=tok.get("edges", "adjlist"),
                            edge_order=tok.get("edge_order", "shuffled"), seed=tok.get("seed", 0))
    tokens = encode(batch, vocab, opts)
    n = batch.grid_n
    w = 2 if opts.coord == "pair" else 1
    max_new = w * (n * n + n) + 1
    n_ctx = int(tokens.prompt_len.max()) + max_new  # room for the whole cap
    spec = {k: v for k, v in model_spec.items() if k not in ("seed", "n_ctx")}
    cfg = ModelConfig(n_ctx=n_ctx, d_vocab=len(vocab), **spec)
    model = GPT(cfg, seed=int(model_spec.get("seed", 0))).eval()

    def end_to_end() -> int:
        tb = encode(batch, vocab, opts)
        _, walks, forks = predict(model, tb, batch, vocab, opts.coord, batch_size)
        compute_metrics(batch, walks, forks)
        compute_metrics(batch, baseline_walks(batch, 0), baseline_fork_choices(batch, 0))
        return len(batch)

    prompts = [tokens.prompt(i) for i in range(n_ref)]
    end_id, pad_id = vocab.token_to_id["<PATH_END>"], vocab.pad_id
    outputs = {}

    def cached() -> int:
        outputs["cached"] = greedy_rollout_cached(model, prompts, max_new, end_id, pad_id, batch_size)
        return len(prompts)

    def recompute() -> int:
        outputs["recompute"] = greedy_rollout(model, prompts, max_new, end_id, pad_id, batch_size, n_ctx=n_ctx)
        return len(prompts)

    def scoring() -> int:
        walks = baseline_walks(batch, 1)
        compute_metrics(batch, walks, baseline_fork_choices(batch, 1))
        return len(batch)

    scoring()  # compile the numba kernels outside the timings
    compute_metrics(batch, baseline_walks(batch, 0))
    results = {
        "end_to_end": {"n_mazes": n_mazes, **timed(end_to_end, repeats)},
        "rollout_cached": {"n_mazes": n_ref, **timed(cached, repeats)},
        "rollout_recompute": {"n_mazes": n_ref, **timed(recompute, 1)},
        "metrics_and_baseline": {"n_mazes": n_mazes, **timed(scoring, repeats)},
    }
    same = [a.tolist() for a in outputs["cached"]] == [b.tolist() for b in outputs["recompute"]]
    generated = sum(len(g) for g in outputs["cached"])
    doc = {
        "benchmark": "evaluate",
        "dataset": {**dataset, "n_mazes": n_mazes},
        "tokenizer": {"coord": opts.coord, "edges": opts.edges, "edge_order": opts.edge_order},
        "model": {**cfg.to_dict(), "n_params": model.n_params(), "init": "random (never ends: worst case)"},
        "batch_size": batch_size,
        "mean_prompt_tokens": float(tokens.prompt_len.mean()),
        "mean_generated_tokens": generated / n_ref,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "ratio_cached_vs_recompute": results["rollout_cached"]["per_s"] / results["rollout_recompute"]["per_s"],
        "cached_equals_recompute": same,
        "machine": machine_info(),
    }
    write_report(args.out, doc)
    e2e = results["end_to_end"]
    print(f"evaluate: {e2e['per_s']:.1f} mazes/s end to end ({n_mazes} {n}x{n} mazes, "
          f"{model.n_params()} params, decoding to the cap); cached decoding "
          f"{doc['ratio_cached_vs_recompute']:.1f}x the full-recompute reference (same tokens: {same}) "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
