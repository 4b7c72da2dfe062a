"""Stage faithfulness: keep the top-k heads by patching, mean-ablate the rest, roll out.

    models/ + data/{mazes,tokens}/<faithfulness.dataset>.parquet + reports/patching/heads.csv
    + data/vocab.json -> reports/faithfulness/
        metrics.json     headline (DVC metric): exact-path rate of the full model and with every
                         head ablated, the smallest k keeping >= 95% of the full rate (patching
                         order, and a random order as control), examples ablation helps
        details.json     the ranking, the curve per k with 95% intervals, per k the maze rows
                         ablation helps
        curve.csv        k, ranked, random, ablation (a DVC plot)
        per_example.csv  maze_row, then one 0/1 column per k (ranked order): exact path
        curve.png        the two curves with the full and all-ablated ends

Heads are ranked by the damage their noising does in stage patching (mean over the patched
kinds); the control is a random order seeded by ``faithfulness.control_seed``; the reference
orders heads by the exact-path rate lost when each alone is mean-ablated (what patching's
ranking would ideally reproduce). Definitions:
mazesearch.interp.faithfulness.
"""

from __future__ import annotations

import csv
import io
import time

import numpy as np

from mazesearch.io import InputError, atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section
from stages._run_args import model_run_parser


def read_head_rows(path: str) -> list[dict[str, str]]:
    """The rows of patching's head table (kind, layer, head, noise), read before the model is
    loaded so that a bad table fails in a second, not after the slow imports."""
    try:
        rows = list(csv.DictReader(io.StringIO(open(path).read())))
        missing = [c for c in ("kind", "layer", "head", "noise") if rows and c not in rows[0]]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(path, f"cannot read the head patching table ({exc})", "re-run `dvc repro patching`") from None
    if not rows:
        raise InputError(path, "no head scores in it", "re-run `dvc repro patching`")
    return rows


def ranking_of(path: str, rows: list[dict[str, str]], n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    from mazesearch.interp.patching import head_ranking

    try:
        noise: dict[str, np.ndarray] = {}
        for r in rows:
            grid = noise.setdefault(r["kind"], np.full((n_layers, n_heads), np.nan))
            grid[int(r["layer"]), int(r["head"])] = float(r["noise"]) if r["noise"] not in ("", "None") else np.nan
    except (ValueError, IndexError) as exc:  # a layer or head this model does not have, a bad number
        raise InputError(path, f"cannot read the head patching table ({exc})", "re-run `dvc repro patching`") from None
    return head_ranking(list(noise.values()))  # heads without a score rank last, in model order


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports/faithfulness")
    ap.add_argument("--heads", default="reports/patching/heads.csv")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "faithfulness", "faithfulness")
    head_rows = read_head_rows(args.heads)
    from mazesearch.interp import faithfulness as faith
    from mazesearch.interp.intervene import head_means
    from mazesearch.interp.run_inputs import load_inputs
    from mazesearch.evaluation.predict import walks_of
    from mazesearch.interp.steering import rate
    from mazesearch.evaluation.metrics import compute_metrics
    from mazesearch.viz.causal_charts import render_curves

    t0 = time.perf_counter()
    run = load_inputs("faithfulness", spec, params, model_dir=args.model_dir, tokens_dir=args.tokens_dir,
                      mazes_dir=args.mazes_dir, vocab_path=args.vocab)
    model = run.gpt
    L, H = model.cfg.n_layers, model.cfg.n_heads
    ranking = ranking_of(args.heads, head_rows, L, H)
    control = faith.random_ranking(L, H, spec.control_seed)
    vocab, n = run.vocab, run.mazes.grid_n
    prompts = [run.tokens.prompt(i) for i in range(len(run.tokens))]
    means = head_means(model, [run.tokens.tokens(i) for i in range(len(run.tokens))], vocab.pad_id, spec.batch_size)
    score = lambda generated: compute_metrics(run.mazes, walks_of(generated, vocab, n))["exact_path"]  # noqa: E731
    roll = dict(max_new_tokens=n * n + n + 1, end_id=vocab.token_to_id["<PATH_END>"], pad_id=vocab.pad_id,
                batch_size=spec.batch_size)
    seen: dict[bytes, np.ndarray] = {}  # keep mask -> exact [B]: every order shares k = 0 and k = all

    def run_keep(keep: np.ndarray) -> np.ndarray:
        if keep.tobytes() not in seen:
            seen[keep.tobytes()] = faith.exact_under_ablation(model, prompts, keep, means, score, **roll)
        return seen[keep.tobytes()]

    # a reference order: heads by the exact-path rate lost when each alone is ablated
    alone = np.array([[run_keep(~np.eye(L * H, dtype=bool)[l * H + h].reshape(L, H)).mean() for h in range(H)]
                      for l in range(L)])  # [L, H]
    by_ablation = [(int(i) // H, int(i) % H) for i in np.argsort(alone, axis=None, kind="stable")]
    orders = {"ranked": ranking, "random": control, "ablation": by_ablation}
    exact = {name: np.stack([run_keep(faith.keep_mask(order, k, L, H)) for k in range(L * H + 1)])
             for name, order in orders.items()}  # bool [K + 1, B] each
    curve = {name: e.mean(axis=1) for name, e in exact.items()}
    full, none = float(curve["ranked"][-1]), float(curve["ranked"][0])
    helps = {name: faith.helped(e) for name, e in exact.items()}
    k_ranked, k_random, k_ablation = (faith.smallest_k(curve[name], full) for name in orders)
    metrics = {"full_exact": round(full, 4), "all_ablated_exact": round(none, 4), "level": faith.LEVEL,
               "k_ranked": k_ranked, "k_random": k_random, "k_ablation": k_ablation, "n_heads": L * H,
               "exact_at_k_ranked": None if k_ranked is None else round(float(curve["ranked"][k_ranked]), 4),
               "max_helped": int(helps["ranked"][:-1].max()) if L * H else 0}
    details = {"dataset": spec.dataset, "n_mazes": len(prompts), "ranking": [f"L{l}H{h}" for l, h in ranking],
               "control_ranking": [f"L{l}H{h}" for l, h in control],
               "ablation_ranking": [f"L{l}H{h}" for l, h in by_ablation],
               "exact_with_one_head_ablated": {f"L{l}H{h}": round(float(alone[l, h]), 4)
                                               for l in range(L) for h in range(H)},
               "curve": {name: [{"k": k, **rate(e[k]), "helped": int(helps[name][k]),
                                 "helped_rows": np.flatnonzero(e[k] & ~e[-1]).tolist()}
                                for k in range(len(e))] for name, e in exact.items()}}
    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", details)
        write_text_atomic(out / "curve.csv", "k,ranked,random,ablation\n" + "".join(
            f"{k},{curve['ranked'][k]:.4f},{curve['random'][k]:.4f},{curve['ablation'][k]:.4f}\n"
            for k in range(L * H + 1)))
        header = "maze_row," + ",".join(f"k{k}" for k in range(L * H + 1))
        body = "".join(f"{i}," + ",".join(str(int(x)) for x in exact["ranked"][:, i]) + "\n" for i in range(len(prompts)))
        write_text_atomic(out / "per_example.csv", header + "\n" + body)
        ks = np.arange(L * H + 1, dtype=float)
        render_curves({f"{len(prompts)} mazes of {spec.dataset}": {
            "patching order": (ks, curve["ranked"]), "random order (control)": (ks, curve["random"]),
            "single-ablation order (reference)": (ks, curve["ablation"]),
            f"{faith.LEVEL:.0%} of full": (ks, np.full_like(ks, faith.LEVEL * full))}},
            out / "curve.png", title=f"faithfulness: exact-path rate keeping the top k heads, the rest mean-ablated "
                                     f"(full {full:.3f}, all ablated {none:.3f})",
            xlabel="heads kept (k)", ylabel="exact-path rate")
    print(f"faithfulness: {time.perf_counter() - t0:.1f}s; " + ", ".join(f"{k} {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
