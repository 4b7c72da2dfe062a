"""The experiment record of issue 19: learned vs rotary positions x coverage on/off x 3 seeds.

``python -m mazesearch.bench record queue`` queues the 12 runs as DVC experiments on the
reduced profile ``profiles/record.yaml`` (``dvc exp run --queue``; params.yaml is restored
afterwards), to be run with ``dvc queue start -j 1``. Each run reproduces up to ``eval_summary``.

``python -m mazesearch.bench record table`` reads the finished experiments (``dvc exp show
--json``) and writes ``reports/bench/record.json`` and ``record.md``: per run the exact-path
rates, and per arm the mean and the seed range, with the random-at-forks baseline; a difference
between arms counts only when the ranges of the seeds do not overlap.

Coverage on = the profile's data (3x3 and 4x4 mazes anywhere in a 7x7 lattice); coverage off =
4x4 mazes at the origin of a 4x4 lattice (row/column 4-6 coordinate tokens never trained).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mazesearch.bench import write_report

IN_ALL = False  # needs finished experiments: not part of `bench all`
PROFILE = Path("profiles/record.yaml")
POSITIONAL = ("learned", "rotary")
COVERAGE = ("on", "off")
SEEDS = (0, 1, 2)
SUITES = ("test", "probe", "size_5", "size_5_placed")
COVERAGE_OFF = [
    f"datasets.{name}.{key}={value}"
    for name in ("train", "val")
    for key, value in (("grid_n", 4), ("sizes", "[4]"), ("placement", "origin"))
]


def run_name(positional: str, coverage: str, seed: int) -> str:
    return f"rec-{positional}-cov{coverage}-s{seed}"


def overrides(positional: str, coverage: str, seed: int) -> list[str]:
    sets = [f"model.positional={positional}", f"model.seed={seed}", f"train.seed={seed}"]
    return sets + (COVERAGE_OFF if coverage == "off" else [])


def queue(dvc: str) -> None:
    params = Path("params.yaml")
    kept = params.read_bytes()
    try:
        params.write_bytes(PROFILE.read_bytes())
        for positional in POSITIONAL:
            for coverage in COVERAGE:
                for seed in SEEDS:
                    cmd = [dvc, "exp", "run", "--queue", "-n", run_name(positional, coverage, seed)]
                    for s in overrides(positional, coverage, seed):
                        cmd += ["-S", s]
                    subprocess.run([*cmd, "eval_summary"], check=True)
    finally:
        params.write_bytes(kept)
    print("queued 12 runs; start them with: dvc queue start -j 1 (then dvc queue status)")


def _metric(metrics: dict, path: str, key: str):
    for file, entry in metrics.items():
        if file == path:
            data = entry.get("data", entry)
            return data.get(key)
    return None


def read_runs(dvc: str) -> list[dict]:
    """One row per finished record experiment, from ``dvc exp show --json``."""
    shown = json.loads(subprocess.run([dvc, "exp", "show", "--json", "-A"], check=True,
                                      capture_output=True, text=True).stdout)
    rows = []
    for commit in shown:
        for exp in commit.get("experiments") or []:
            executor = exp.get("executor") or {}
            if executor.get("state", "success") != "success":  # queued/running: shows its baseline's metrics
                continue
            for rev in exp.get("revs", []):
                name = rev.get("name") or ""
                if not name.startswith("rec-") or not rev.get("data"):
                    continue
                metrics = rev["data"].get("metrics", {})
                row = {"name": name}
                _, positional, coverage, seed = name.split("-")
                row.update(positional=positional, coverage=coverage[3:], seed=int(seed[1:]))
                for suite in SUITES:
                    path = f"reports/eval/suites/{suite}.json"
                    row[suite] = {k: _metric(metrics, path, k) for k in
                                  ("model_exact", "model_exact_lo", "model_exact_hi", "baseline_exact")}
                rows.append(row)
    return sorted(rows, key=lambda r: (r["positional"], r["coverage"], r["seed"]))


def summarize(rows: list[dict]) -> dict:
    """Per arm and suite: mean, min and max over seeds of the model's exact rate."""
    arms = {}
    for row in rows:
        arm = arms.setdefault(f"{row['positional']}/cov-{row['coverage']}", {"seeds": []})
        arm["seeds"].append(row["seed"])
        for suite in SUITES:
            value = row[suite]["model_exact"]
            if value is None:
                continue
            stats = arm.setdefault(suite, {"values": [], "baseline": []})
            stats["values"].append(value)
            stats["baseline"].append(row[suite]["baseline_exact"])
    for arm in arms.values():
        for suite in SUITES:
            if suite in arm:
                v = arm[suite]["values"]
                arm[suite].update(mean=sum(v) / len(v), min=min(v), max=max(v),
                                  baseline=sum(arm[suite]["baseline"]) / len(v))
    return arms


def separated(a: dict, b: dict) -> bool:
    """True when the seed ranges of two arms do not overlap (a difference beyond the seed spread)."""
    return a["min"] > b["max"] or b["min"] > a["max"]


def markdown(arms: dict) -> str:
    lines = ["| arm | seeds | " + " | ".join(f"{s} mean [min, max] (baseline)" for s in SUITES) + " |",
             "|---|---|" + "---|" * len(SUITES)]
    for name, arm in sorted(arms.items()):
        cells = []
        for suite in SUITES:
            s = arm.get(suite)
            cells.append("n/a" if s is None else
                         f"{s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}] ({s['baseline']:.3f})")
        lines.append(f"| {name} | {len(arm['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", "rotary vs learned, beyond the seed spread (ranges disjoint):", ""]
    for coverage in COVERAGE:
        r, l = arms.get(f"rotary/cov-{coverage}"), arms.get(f"learned/cov-{coverage}")
        if not (r and l):
            continue
        for suite in SUITES:
            if suite in r and suite in l:
                verdict = "yes" if separated(r[suite], l[suite]) else "no"
                lines.append(f"- coverage {coverage}, {suite}: rotary {r[suite]['mean']:.3f} vs learned "
                             f"{l[suite]['mean']:.3f}: {verdict}")
    return "\n".join(lines) + "\n"


def table(dvc: str) -> None:
    rows = read_runs(dvc)
    if not rows:
        print("error: no finished rec-* experiments (dvc exp show -A)", file=sys.stderr)
        raise SystemExit(2)
    arms = summarize(rows)
    write_report("reports/bench/record.json", {"runs": rows, "arms": arms})
    md = markdown(arms)
    Path("reports/bench/record.md").write_text(md)
    print(md)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["queue", "table"])
    ap.add_argument("--dvc", default=str(Path(sys.executable).with_name("dvc")))
    args = ap.parse_args(argv)
    (queue if args.action == "queue" else table)(args.dvc)


if __name__ == "__main__":
    main()
