"""Stage logit_lens: each layer's residual stream decoded as next-cell logits at teacher-forced moves.

    models/ + data/{mazes,tokens}/<logit_lens.dataset>.parquet + data/vocab.json ->
        reports/logit_lens/metrics.json   headline (DVC metric): final-layer accuracy at forks
                                          (trained, control, chance) and corridors, mean decision
                                          layer at forks and corridors, dead-end mass at forks
                                          in the embedding and the last layer, the last layer's
                                          dead-end share (dead / (dead + next cell)) and the control's
        reports/logit_lens/details.json   per layer, trained and control: accuracy and correct-cell
                                          probability at forks / corridors, decision-layer counts,
                                          softmax mass at forks per kind; chance rates
        reports/logit_lens/lens.csv       layer_idx, layer, forks, corridors, control_forks,
                                          control_corridors, chance_forks (a DVC plot)
        reports/logit_lens/lens.png       the curves (docs/interp.md)

The control is ``GPT(same config, seed=logit_lens.control_seed)``, never trained.
"""

from __future__ import annotations

import time

from mazesearch.io import atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section
from stages._run_args import model_run_parser


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports/logit_lens")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "logit_lens", "logit_lens")
    from mazesearch.interp import lens
    from mazesearch.interp.run_inputs import load_inputs
    from mazesearch.viz.lens_charts import render_lens

    t0 = time.perf_counter()
    run = load_inputs("logit_lens", spec, params, model_dir=args.model_dir, tokens_dir=args.tokens_dir,
                      mazes_dir=args.mazes_dir, vocab_path=args.vocab)
    summaries = {}
    for role, bridge in (("trained", run.trained), ("control", run.control)):
        logits = lens.run_lens(bridge, run.tokens, run.moves, spec.batch_size, run.vocab.pad_id)
        summaries[role] = lens.summarize(logits, run.moves, run.cell_token)
    layers = lens.layer_names(run.n_layers)
    metrics, details, csv = lens.report(summaries["trained"], summaries["control"], run.moves, layers)
    details = {"dataset": spec.dataset, "n_mazes": spec.n_mazes, "control_seed": spec.control_seed, **details}

    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", details)
        write_text_atomic(out / "lens.csv", csv)
        n = details["n_positions"]
        render_lens(layers, details["trained"], details["control"], details["chance"]["forks"], out / "lens.png",
                    title=f"logit lens at teacher-forced moves: {spec.n_mazes} mazes of {spec.dataset}, "
                          f"{n['forks']} forks, {n['corridors']} corridors; control = random-init model")
    print(f"logit_lens: {len(run.moves)} moves ({details['n_positions']['forks']} forks) in "
          f"{time.perf_counter() - t0:.1f}s; " + ", ".join(f"{k} {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
