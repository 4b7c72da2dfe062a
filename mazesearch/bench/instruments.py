"""Every instrument's headline, read from the committed reports of two revisions, side by side.

``python -m mazesearch.bench instruments OLD [NEW]`` reads the metrics files each stage writes
under ``reports/`` (DVC metrics are kept in git: ``cache: false``) at git revision ``OLD`` and at
``NEW`` (default: the working tree) and writes ``reports/bench/instruments.md`` (and ``.json``):
one row per headline — test exact, the size suites, each probe beside both controls, reach per
layer, the top head per hypothesis, the DLA top components, the logit lens at forks, patching,
steering per kind, faithfulness k — with the control beside every score. A stage that has not run
at a revision shows "—".
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from mazesearch.bench import write_report

IN_ALL = False  # needs two revisions' reports
SIZE_SUITES = ("test", "size_5", "size_5_placed", "size_6", "size_6_placed", "size_7")
PROBES = ("walls", "target", "future_path", "on_solution", "next_move", "dist_to_target")
STEER_KINDS = ("target_move", "wall_move", "edge_add", "edge_remove")
HYPOTHESES = ("lattice_adjacency", "adjlist_occurrences", "adjlist_partners", "target", "origin")


def reader(rev: str | None):
    """path -> parsed JSON at ``rev`` (None: the working tree), or None when absent."""
    def read(path: str):
        if rev is None:
            p = Path(path)
            return json.loads(p.read_text()) if p.exists() else None
        out = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
        return json.loads(out.stdout) if out.returncode == 0 else None
    return read


def _f(x, digits: int = 3) -> str:
    return "—" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def rows(read) -> dict[str, str]:
    """Row label -> the cell text at one revision."""
    out: dict[str, str] = {}
    for suite in SIZE_SUITES:
        s = read(f"reports/eval/suites/{suite}.json")
        out[f"exact: {suite} (baseline)"] = "—" if s is None else (
            f"{s['model_exact']:.3f} [{s['model_exact_lo']:.3f}, {s['model_exact_hi']:.3f}] ({s['baseline_exact']:.3f})")
    for probe in PROBES:
        m = read(f"reports/probes/metrics/{probe}.json")
        if m is None:
            out[f"probe {probe}: trained / random-init / permuted"] = "—"
            continue
        score, sr, sp = m["test_score"], m["selectivity_vs_random_init"], m["selectivity_vs_permuted"]
        ctrl = lambda sel: None if sel is None else score - sel  # noqa: E731
        out[f"probe {probe}: trained / random-init / permuted"] = (
            f"{score:.3f} / {_f(ctrl(sr))} / {_f(ctrl(sp))} at {m['best_layer'].replace('.hook_resid_post', '')}")
    reach = read("reports/reach/metrics.json")
    for what in ("target", "current"):
        out[f"reach ({what}): k per layer"] = "—" if reach is None else " ".join(str(v) for v in reach[what].values())
    heads = read("reports/heads/metrics.json")
    for hyp in HYPOTHESES:
        h = None if heads is None else heads.get(hyp)
        out[f"head {hyp}: best (score / random-init best)"] = "—" if h is None else (
            f"L{h['layer']}H{h['head']} {h['score']:.3f} / {h['control_best']:.3f}")
    dla = read("reports/dla/metrics.json")
    out["DLA at forks: top components (mean logit diff)"] = "—" if dla is None else ", ".join(
        f"{dla[f'top{i}_component']} {dla[f'top{i}_mean']:.2f}" for i in (1, 2, 3)) + (
        f" of {dla['total_logit_diff']:.2f} (random-init {dla['control_total_logit_diff']:.2f})")
    lens = read("reports/logit_lens/metrics.json")
    out["logit lens at forks: acc (random-init / chance), decision layer"] = "—" if lens is None else (
        f"{lens['acc_forks']:.3f} ({lens['control_acc_forks']:.3f} / {lens['chance_forks']:.3f}), "
        f"{lens['decision_layer_forks']:.2f}")
    patch = read("reports/patching/metrics.json")
    patch_names = ((read("reports/patching/details.json") or {}).get("kinds")) or {}  # the names (since issue 29)
    for kind in ("target_move", "wall_move"):
        p = None if patch is None or kind not in patch else {**patch[kind], **patch_names.get(kind, {})}
        out[f"patching {kind}: edit carries until / decision from / top head"] = "—" if p is None else (
            f"{p['edit_carries_until']} / {p['decision_from']} / {p['top_head']} (n={p['n_pairs']})")
    steer = read("reports/steering/metrics.json")
    steer_all = (read("reports/steering/details.json") or {}).get("summary") or {}  # every number (since issue 27)
    for kind in STEER_KINDS:
        s = None if steer is None else {**steer.get(kind, {}), **steer_all.get(kind, {})} or None
        out[f"steering {kind}: probe / random / permuted / unsteered"] = "—" if s is None else (
            f"{s['probe_success']:.3f} / {s['random_success']:.3f} / {s['permuted_success']:.3f} / "
            f"{s['unsteered_success']:.3f}")
    faith = read("reports/faithfulness/metrics.json")
    out["faithfulness: k heads for 95% (ranked / random / ablation order) of n"] = "—" if faith is None else (
        f"{faith['k_ranked']} / {faith['k_random']} / {faith['k_ablation']} of {faith['n_heads']} "
        f"(full {faith['full_exact']:.3f})")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="git revision of the old reports")
    ap.add_argument("new", nargs="?", help="git revision of the new reports (default: the working tree)")
    ap.add_argument("--out", default="reports/bench/instruments")
    args = ap.parse_args(argv)
    if subprocess.run(["git", "rev-parse", "--verify", "-q", f"{args.old}^{{commit}}"],
                      capture_output=True).returncode:
        raise SystemExit(f"error: {args.old!r} is not a git revision")
    old, new = rows(reader(args.old)), rows(reader(args.new))
    label_new = args.new or "working tree"
    lines = [f"| instrument | {args.old} | {label_new} |", "|---|---|---|"]
    lines += [f"| {k} | {old[k]} | {new[k]} |" for k in old]
    md = "\n".join(lines) + "\n"
    Path(f"{args.out}.md").write_text(md)
    write_report(f"{args.out}.json", {"benchmark": "instruments", "old": args.old, "new": label_new,
                                      "rows": {k: {"old": old[k], "new": new[k]} for k in old}})
    print(md)


if __name__ == "__main__":
    main()
