"""Stage dla: direct logit attribution of the fork decisions to embeddings, heads, MLPs and biases.

    models/ + data/{mazes,tokens}/<dla.dataset>.parquet + data/vocab.json ->
        reports/dla/metrics.json      headline (DVC metric): mean logit difference (correct next
                                      cell - best wrong legal neighbour) of the trained model and
                                      the control, the top 3 components by |mean contribution|
                                      with their means, the top one's fraction of the total
        reports/dla/details.json      per component mean and std (trained, control), per-layer
                                      attention sums, the decomposition's sum error, the ranking
        reports/dla/components.csv    component, mean, std, control_mean (model order)
        reports/dla/top_components.png  the largest components, trained beside control

The decomposition is by hand with the final LayerNorm's scale frozen from the real forward, and
its parts sum to the model's logit difference (checked here: the stage fails otherwise).
The control is ``GPT(same config, seed=dla.control_seed)``, never trained.
"""

from __future__ import annotations

import time

from mazesearch.io import atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section
from stages._run_args import model_run_parser

N_BARS = 12  # components in the picture (all of them are in components.csv)


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports/dla")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "dla", "dla")
    from mazesearch.interp import dla
    from mazesearch.interp.run_inputs import load_inputs
    from mazesearch.viz.lens_charts import render_attribution

    t0 = time.perf_counter()
    run = load_inputs("dla", spec, params, model_dir=args.model_dir, tokens_dir=args.tokens_dir,
                      mazes_dir=args.mazes_dir, vocab_path=args.vocab)
    att = {role: dla.fork_attribution(bridge, run.tokens, run.moves, run.cell_token, spec.batch_size,
                                      run.vocab.pad_id)
           for role, bridge in (("trained", run.trained), ("control", run.control))}
    for role, a in att.items():
        error = dla.sum_error(a.values, a.total)
        if error > dla.SUM_TOLERANCE:  # a bug, not bad input: the parts must add up
            raise RuntimeError(f"dla: the {role} model's components miss its logit difference by {error:.2e} "
                               "(relative)")
    metrics, details, csv, ranked = dla.report(att["trained"], att["control"])
    details = {"dataset": spec.dataset, "n_mazes": spec.n_mazes, "control_seed": spec.control_seed,
               "components": att["trained"].names, **details}

    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", details)
        write_text_atomic(out / "components.csv", csv)
        shown = ranked[:N_BARS]
        t, c = details["trained"]["components"], details["control"]["components"]
        total, control_total = (f"{v:.3g}" if v is not None else "undefined"
                                for v in (details["trained"]["total"]["mean"], details["control"]["total"]["mean"]))
        render_attribution(shown, [t[n]["mean"] for n in shown], [t[n]["std"] for n in shown],
                           [c[n]["mean"] for n in shown], out / "top_components.png",
                           title=f"direct logit attribution at {details['n_forks']} forks ({spec.n_mazes} mazes "
                                 f"of {spec.dataset}): mean logit difference {total} (control {control_total}); "
                                 f"top {len(shown)} of {len(t)} components by |mean|")
    print(f"dla: {details['n_forks']} forks in {time.perf_counter() - t0:.1f}s; "
          + ", ".join(f"{k} {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
