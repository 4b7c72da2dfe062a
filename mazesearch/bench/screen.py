"""Screening the sample-efficiency levers of issue 26: short proxy runs, seeds, one table.

``python -m mazesearch.bench screen run [--steps 1500] [--seeds 0,1] [--only a,b] [--prefix s1]``
runs ``python -m mazesearch.bench recipe`` once per lever and seed (one process at a time; a
finished run's JSON is kept and skipped, so a killed screen resumes), each with ``--set
model.seed=S --set train.seed=S`` and the lever's overrides, evaluating ``test`` (in distribution)
and ``size_5`` / ``size_5_placed`` (n+1) with the random-at-forks baseline.

``python -m mazesearch.bench screen table [--prefix s1]`` reads ``reports/bench/recipe-<prefix>-*.json``
and writes ``reports/bench/screen-<prefix>.md`` (and ``.json``): per lever the seeds, the mean
exact-path rate over seeds with the pooled 95% Wilson interval (all seeds' mazes) and each seed's
rate, the baseline, train tokens/s and minutes. A lever differs from ``base`` only where the seed
ranges do not overlap.

Why recipe and not ``dvc exp run --queue``: a DVC experiment also reruns every stage after train
(activations, probes, interp: minutes per run); a screen needs only train and three suites.
The recipe builds the data exactly as the stages do (same seeds, train exclusion).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from mazesearch.bench import write_report
from mazesearch.evaluation.stats import wilson_interval

IN_ALL = False  # an experiment, not a benchmark: minutes per lever
SUITES = ("test", "size_5", "size_5_placed")
# lever -> overrides of params.yaml (dotted keys, YAML values); "base" is the default recipe
LEVERS: dict[str, list[str]] = {
    "base": [],
    "lr1e-3": ["train.lr=0.001"],
    "bs128": ["train.batch_size=128", "train.max_steps={half}"],  # same sequences, half the steps
    "lr6e-3": ["train.lr=0.006"],
    "wd0": ["train.weight_decay=0.0"],
    "d48x6": ["model.d_model=48", "model.n_layers=6", "model.d_head=12", "model.d_mlp=192"],
    "d96x2": ["model.d_model=96", "model.n_layers=2", "model.d_head=24", "model.d_mlp=384"],
    "losspath": ["train.loss_on=path"],
    "minpath5": ["datasets.train.min_path_len=5"],
    "dw3": ["train.decision_weight=3.0"],
    "lookahead2": ["train.lookahead=2"],
    "randpos": ["train.position_ids=random"],
    # one epoch = the proxy's sequences, so the whole curriculum fits the short run
    "curric1": ["train.curriculum_epochs=1", "datasets.train.n_mazes={sequences}"],
    # combinations of the levers that led on their first seed
    "path+dw3": ["train.loss_on=path", "train.decision_weight=3.0"],
    "path+dw3+d96x2": ["train.loss_on=path", "train.decision_weight=3.0", "model.d_model=96", "model.n_layers=2",
                       "model.d_head=24", "model.d_mlp=384"],
    # the same at equal training time: d96x2 steps 1.4x faster than d64x4 (tokens/s of the screen)
    "path+dw3+d96x2-eqtime": ["train.loss_on=path", "train.decision_weight=3.0", "model.d_model=96",
                              "model.n_layers=2", "model.d_head=24", "model.d_mlp=384", "train.max_steps={eqtime}"],
}


def run(args) -> None:
    levers = args.only.split(",") if args.only else list(LEVERS)
    unknown = [lv for lv in levers if lv not in LEVERS]
    if unknown:
        raise SystemExit(f"error: unknown lever(s) {unknown}; known: {', '.join(LEVERS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    from mazesearch.params import load_params

    batch = load_params(args.params).train.batch_size  # the {sequences} placeholder: one epoch = the proxy
    for seed in seeds:  # every lever's first seed first: an early look at all of them
        for lever in levers:
            name = f"{args.prefix}-{lever}-seed{seed}"
            if Path(f"reports/bench/recipe-{name}.json").exists():
                continue
            sets = [s.format(half=args.steps // 2, sequences=args.steps * batch, eqtime=round(args.steps * 1.4))
                    for s in LEVERS[lever]]
            cmd = [sys.executable, "-m", "mazesearch.bench", "recipe", name, "--params", args.params,
                   "--suites", ",".join(SUITES),
                   "--set", f"train.max_steps={args.steps}", "--set", f"model.seed={seed}",
                   "--set", f"train.seed={seed}"]
            for s in sets:
                cmd += ["--set", s]
            print("$", " ".join(cmd[1:]), flush=True)
            if subprocess.run(cmd).returncode:
                print(f"screen: {name} failed", flush=True)


def table(args) -> None:
    rows = {}
    for path in sorted(Path("reports/bench").glob(f"recipe-{args.prefix}-*.json")):
        doc = json.loads(path.read_text())
        lever, _, seed = doc["name"][len(args.prefix) + 1 :].rpartition("-seed")
        rows.setdefault(lever, []).append((int(seed), doc))
    if not rows:
        raise SystemExit(f"error: no reports/bench/recipe-{args.prefix}-*.json")
    out, lines = {}, []
    cols = ["lever", "overrides", "seeds", *(c for s in SUITES for c in (f"{s} exact: mean [pooled 95%] (per seed)",
                                                                         f"{s} baseline")), "train tokens/s", "train min"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    order = [lv for lv in LEVERS if lv in rows] + sorted(set(rows) - set(LEVERS))
    for lever in order:
        runs = sorted(rows[lever], key=lambda r: r[0])
        entry = {"seeds": [s for s, _ in runs], "overrides": runs[0][1]["overrides"], "suites": {}}
        cells = []
        for suite in SUITES:
            per = [d["suites"][suite] for _, d in runs if suite in d["suites"]]
            rates = [r["model_exact"] for r in per]
            n = sum(r["n_mazes"] for r in per)
            lo, hi = wilson_interval(round(sum(r["model_exact"] * r["n_mazes"] for r in per)), n)
            base = statistics.mean(r["baseline_exact"] for r in per)
            entry["suites"][suite] = {"mean": statistics.mean(rates), "pooled_ci95": [lo, hi], "per_seed": rates,
                                      "baseline": base}
            if any("model_exact_random_positions" in r for r in per):
                entry["suites"][suite]["per_seed_at_random_positions"] = [r.get("model_exact_random_positions")
                                                                          for r in per]
            cells.append(f"{statistics.mean(rates):.3f} [{lo:.3f}, {hi:.3f}] ({', '.join(f'{r:.3f}' for r in rates)})")
            cells.append(f"{base:.3f}")
        tps = statistics.mean(d["train_tokens_per_s"] for _, d in runs)
        minutes = statistics.mean(d["minutes"]["train"] for _, d in runs)
        entry.update(train_tokens_per_s=tps, train_minutes=minutes)
        out[lever] = entry
        over = ", ".join(f"`{o}`" for o in entry["overrides"][3:]) or "—"  # past the proxy's steps and seeds
        lines.append(f"| {lever} | {over} | {len(runs)} | " + " | ".join(cells) + f" | {tps / 1000:.1f}K | {minutes:.1f} |")
    md = "\n".join(lines) + "\n"
    Path(f"reports/bench/screen-{args.prefix}.md").write_text(md)
    write_report(f"reports/bench/screen-{args.prefix}.json", {"benchmark": "screen", "prefix": args.prefix, "levers": out})
    print(md)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the proxy recipe per lever and seed")
    r.add_argument("--steps", type=int, default=1500)
    r.add_argument("--seeds", default="0,1")
    r.add_argument("--only", help="comma-separated levers (default: all)")
    r.add_argument("--prefix", default="s1")
    r.add_argument("--params", default="params.yaml", help="the params file the recipes start from")
    t = sub.add_parser("table", help="write reports/bench/screen-<prefix>.md")
    t.add_argument("--prefix", default="s1")
    args = ap.parse_args(argv)
    (run if args.cmd == "run" else table)(args)


if __name__ == "__main__":
    main()
