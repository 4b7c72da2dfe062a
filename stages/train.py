"""Stage train: data/tokens/{train,val}.parquet -> models/ (weights + config), reports/train/.

reports/train/ is a dvclive directory written as training goes (mazesearch/model/runlog.py):
metrics.json (headline: final val exact-path rate and losses) and plots/metrics/{train,val}/*.tsv.
models/snapshots/step_<step>/ holds train.n_snapshots evenly spaced weight snapshots (stage
dynamics fits probes on each); they are written under checkpoints/train/ as training goes and
moved into place with the final weights.

Under ``torchrun --standalone --nproc-per-node N -m stages.train`` it trains with
DistributedDataParallel (mazesearch/model/distributed.py); rank 0 writes every output.

Resumes from checkpoints/train/ when a killed run left state with the same params, data and
training code; otherwise trains from scratch. checkpoints/ is scratch space outside DVC's
outputs: the resume state is deleted once the outputs are written, and the wall-clock timing
of the last run (checkpoints/train/timing.json) never enters a DVC output.
"""

import argparse
import json
from pathlib import Path

from mazesearch.data.tokens import Vocab, read_tokens
from mazesearch.io import StageError, atomic_dir, stage_main, write_text_atomic
from mazesearch.model import distributed
from mazesearch.model.gpt import save_checkpoint
from mazesearch.model.checkpoints import SNAPSHOTS, clear_training_state
from mazesearch.model.train import train
from mazesearch.params import load_params_or_exit, require_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--train", default="data/tokens/train.parquet")
    ap.add_argument("--val", default="data/tokens/val.parquet")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--snapshots-dir", default=None, help="default: <model-dir>/snapshots")
    ap.add_argument("--reports-dir", default="reports/train")
    ap.add_argument("--checkpoint-dir", default="checkpoints/train")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    model_spec, train_spec = require_section(params, "model", "train"), require_section(params, "train", "train")
    vocab = Vocab.from_json(args.vocab)
    train_tokens, val_tokens = read_tokens(args.train, vocab=vocab), read_tokens(args.val, vocab=vocab)
    dist = distributed.from_env()  # under torchrun: join the process group (README "Training on several processes")
    try:
        result = train(model_spec, train_spec, train_tokens, val_tokens, vocab,
                       checkpoint_dir=args.checkpoint_dir, live_dir=args.reports_dir)
    except ValueError as exc:  # bad combination of params and data (n_ctx, batch_size, device)
        raise StageError(str(exc)) from None
    if dist is not None and not dist.is_main:  # rank 0 writes everything
        distributed.finish(dist)
        return

    save_checkpoint(result.model.to("cpu"), args.model_dir)
    snapshots_dir = Path(args.model_dir) / "snapshots" if args.snapshots_dir is None else Path(args.snapshots_dir)
    with atomic_dir(snapshots_dir) as out:  # every snapshot or none (empty: n_snapshots 0)
        written = Path(args.checkpoint_dir) / SNAPSHOTS
        for snap in sorted(written.iterdir()) if written.is_dir() else []:
            snap.rename(out / snap.name)
    result.log.finish(result.metrics)  # reports/train/metrics.json: the headline
    clear_training_state(args.checkpoint_dir)
    m = result.metrics
    timing = {"wall_s": round(result.wall_s, 1), "resumed_from": result.resumed_from,
              "tokens_per_s": round(result.tokens_per_s), "padding_frac": round(result.padding_frac, 4),
              "device": str(result.device), "bf16": result.bf16}
    write_text_atomic(Path(args.checkpoint_dir) / "timing.json", json.dumps(timing, indent=2) + "\n")
    distributed.finish(dist)
    print(
        f"train: {m['steps']} steps on {result.device}{'' if dist is None else f' x {dist.world} processes'}, {m['tokens_seen']} tokens, {result.wall_s:.0f}s "
        f"({result.tokens_per_s:.0f} real tokens/s, {100 * result.padding_frac:.1f}% padding) "
        f"(resumed at step {result.resumed_from}); "
        f"val loss {m['val_loss']:.4f}, exact path {m['val_exact_path']:.3f}"
    )


if __name__ == "__main__":
    stage_main(main)
