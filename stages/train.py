"""Stage train: data/tokens/{train,val}.parquet -> models/ (weights + config), reports/train/.

Resumes from checkpoints/train/ when the saved run has the same params and data; otherwise
trains from scratch. Outputs are written only at the end, each file atomically.
"""

import argparse
import json
from pathlib import Path

from mazesearch.logger import write_metrics, write_text_atomic
from mazesearch.model import save_checkpoint
from mazesearch.params import load_params_or_exit
from mazesearch.tokens import Vocab, read_tokens
from mazesearch.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--train", default="data/tokens/train.parquet")
    ap.add_argument("--val", default="data/tokens/val.parquet")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--reports-dir", default="reports/train")
    ap.add_argument("--checkpoint-dir", default="checkpoints/train")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    for section in ("model", "train"):
        if getattr(params, section) is None:
            raise SystemExit(f"error: {args.params} has no `{section}` section (needed by stage train)")
    vocab = Vocab.from_json(args.vocab)
    train_tokens, val_tokens = read_tokens(args.train), read_tokens(args.val)
    try:
        result = train(params.model, params.train, train_tokens, val_tokens, vocab, checkpoint_dir=args.checkpoint_dir)
    except ValueError as exc:  # bad combination of params and data (n_ctx, batch_size, device)
        raise SystemExit(f"error: {exc}") from None

    save_checkpoint(result.model.to("cpu"), args.model_dir)
    reports = Path(args.reports_dir)
    result.log.write_curves(reports / "curves")
    write_metrics(reports / "metrics.json", result.metrics)
    m = result.metrics
    # Wall time varies run to run, so it stays out of the (deterministic) DVC outputs.
    timing = {"wall_s": round(result.wall_s, 1), "resumed_from": result.resumed_from,
              "tokens_per_s": round(result.tokens_per_s)}
    write_text_atomic(Path(args.checkpoint_dir) / "timing.json", json.dumps(timing, indent=2) + "\n")
    print(
        f"train: {m['steps']} steps, {m['tokens_seen']} tokens, {result.wall_s:.0f}s "
        f"({result.tokens_per_s:.0f} tokens/s) "
        f"(resumed at step {result.resumed_from}); val loss {m['val_loss']:.4f}, "
        f"exact path {m['val_exact_path']:.3f}"
    )


if __name__ == "__main__":
    main()
