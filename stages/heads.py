"""Stage heads: attention-head hypothesis scores, each against chance and a random-init control.

Reads models/ (model_config.json + model.safetensors), data/vocab.json and the first
``heads.n_mazes`` rows of data/{tokens,mazes}/<heads.dataset>.parquet. For every head and
hypothesis (mazesearch.interp.heads.HYPOTHESES) the attention mass on the keys the hypothesis
names, from TransformerLens patterns. Writes, all at once (``<out>.tmp`` then renamed):

    metrics.json       headline (DVC metric): n_mazes; per hypothesis the top head (layer,
                       head), its score and the random-init control's best head's score
                       (chance and the same control head's score: scores.csv)
    scores.csv         every hypothesis x layer x head: score, 95% bootstrap interval over
                       mazes, chance, score/chance, control score, control/chance, n_queries
    top_heads.md       the top 3 heads per hypothesis, as tables
    <hypothesis>.png   the top head's attention from one query of maze heads.picture_maze,
                       per cell on the maze, beside the same head of the control
    bottleneck.csv     bottleneck attention (mazesearch.interp.bottleneck): per model x layer x
                       head, the mass from path tokens on the adjacency-list tokens of each maze's
                       heads.bottleneck_top top-betweenness cells over that on matched cells (same
                       degree and path status, nearest list position), 95% bootstrap interval;
                       its headline is metrics.json's "bottleneck": {ratio, control_ratio} (each
                       model's best head), the heads and counts in bottleneck.json
    bottleneck.png     that ratio per layer x head, trained beside random-init, and one maze with
                       its bottleneck and matched cells

The control is ``GPT(same config, seed=heads.control_seed)``, never trained (docs/interp.md).
"""

from __future__ import annotations

import time
from pathlib import Path

from mazesearch.data.tokens import Vocab
from mazesearch.model.run_loader import control_model, first_rows, load_trained
from mazesearch.io import InputError, StageError, atomic_dir, stage_main
from mazesearch.params import HeadsSpec, load_params_or_exit
from stages._run_args import model_run_parser


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports/heads")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = params.heads or HeadsSpec()
    vocab = Vocab.from_json(args.vocab)
    tokens_path = Path(args.tokens_dir) / f"{spec.dataset}.parquet"
    n = spec.n_mazes
    tokens, mazes = first_rows("heads", spec.dataset, n, tokens_dir=args.tokens_dir, mazes_dir=args.mazes_dir,
                               vocab=vocab)
    if spec.picture_maze >= n:
        raise StageError(f"heads.picture_maze={spec.picture_maze} must be < heads.n_mazes={n}")

    from mazesearch.interp import bottleneck
    from mazesearch.interp.bridge import to_bridge  # transformer_lens: slow to import
    from mazesearch.interp.heads import HYPOTHESES, score_heads, sequence_roles
    from mazesearch.interp.heads_report import draw_pictures, score_table, write_reports

    try:
        roles = sequence_roles(tokens, vocab, mazes.grid_n)
    except ValueError as exc:
        raise InputError(tokens_path, f"is not a maze sequence file: {exc}",
                         f"re-run `dvc repro tokenize@{spec.dataset}`") from None
    trained, device = load_trained("heads", spec, model_dir=args.model_dir, vocab=vocab, vocab_path=args.vocab)
    if int(tokens.lengths.max()) > trained.cfg.n_ctx:
        raise StageError(f"datasets.{spec.dataset} has sequences of {int(tokens.lengths.max())} tokens, "
                         f"longer than the model's n_ctx={trained.cfg.n_ctx}")
    print(f"heads: device {device}, {spec.num_threads} threads, {n} mazes of {spec.dataset}")
    sets = bottleneck.maze_sets(mazes, roles, spec.bottleneck_top, spec.seed)

    def set_keys(row: int, length: int):  # [2 (bottleneck, matched), T, T], scored in the same forwards
        return bottleneck.set_keys(roles[row], sets[row], length)

    bridges, scores = {}, {}
    for role, gpt in (("trained", trained), ("random", control_model(trained, spec.control_seed))):
        t0 = time.perf_counter()
        bridges[role] = to_bridge(gpt)
        scores[role] = score_heads(bridges[role], tokens, roles, vocab, mazes.grid_n, spec.batch_size, set_keys)
        print(f"heads/{role}: scored in {time.perf_counter() - t0:.1f}s")
    table = score_table(scores["trained"], scores["random"], spec.seed)
    masses = {role: bottleneck.bottleneck_mass(s.extra, sets, roles) for role, s in scores.items()}
    neck = bottleneck.table(masses["trained"], masses["random"], spec.seed)

    with atomic_dir(args.out_dir) as out:
        metrics = write_reports(table, n, out, extra={"bottleneck": bottleneck.headline(neck)[0]})
        draw_pictures(table, metrics, bridges, tokens, roles, mazes, spec.picture_maze, out)
        bottleneck.write_outputs(neck, sets, mazes, spec.picture_maze, out)

    for name in HYPOTHESES:
        m = metrics[name]
        if m["layer"] is None:
            print(f"{name:>20}: no scored queries")
            continue
        print(f"{name:>20}: L{m['layer']}H{m['head']} {m['score']} (control best {m['control_best']})")
    print(f"{'bottleneck':>20}: best ratio {metrics['bottleneck']['ratio']} "
          f"(control best {metrics['bottleneck']['control_ratio']})")


if __name__ == "__main__":
    stage_main(main)
