"""Stage report: one offline page to explore the run.

    reports/<every stage>/ + models/ + data/{mazes,tokens,predictions}/ + data/vocab.json
    -> reports/index.html   sections (data, training, evaluation, size, probes, interpretability,
                            causal) and the maze explorer, its data embedded as JSON
       reports/assets/      the stages' pictures, copied with their metadata stripped

A section whose stage has not run says which `dvc repro` writes it. The explorer re-runs the
model on ``report.mazes_per_suite`` mazes of each of ``report.suites`` (failures first) and fits
its future-path probes on ``report.n_mazes`` teacher-forced mazes of ``report.dataset``.
Definitions: docs/report.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from mazesearch.io import read_json, stage_main
from mazesearch.params import load_params_or_exit, require_section
from mazesearch.model.run_loader import stage_device
from stages._run_args import model_run_parser


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports")
    ap.add_argument("--reports", default="reports", help="where the other stages wrote their reports")
    ap.add_argument("--predictions-dir", default="data/predictions")
    args = ap.parse_args(argv)
    params = load_params_or_exit(args.params)
    spec = require_section(params, "report", "report")

    from mazesearch.report.build import build_explorer
    from mazesearch.report.page import render_page, write_report
    from mazesearch.report.sections import build_sections, dataset_info

    t0 = time.perf_counter()
    sections, assets = build_sections(Path(args.reports), dataset_info(Path(args.mazes_dir)))
    device = stage_device(spec, "report")
    explorer, note = build_explorer(params, spec, device, model_dir=Path(args.model_dir),
                                    mazes_dir=Path(args.mazes_dir), tokens_dir=Path(args.tokens_dir),
                                    predictions_dir=Path(args.predictions_dir), vocab_path=Path(args.vocab))
    present = [s.id for s in sections if s.present]
    subtitle = ""  # render_page puts the count of sections present (as the nav lists them) first
    config = Path(args.model_dir) / "model_config.json"
    if config.is_file():
        cfg = read_json(config, "model config", "re-run `dvc repro train`")
        subtitle = (f"model: {cfg.get('n_layers')} layers x {cfg.get('n_heads')} heads, d_model "
                    f"{cfg.get('d_model')}, {cfg.get('positional')} positions")
    page = render_page("mazesearch: does a small transformer search?", subtitle, sections, explorer, note)
    out = Path(args.out_dir)
    write_report(out / "index.html", out / "assets", page, assets)
    print(f"report: {time.perf_counter() - t0:.1f}s; sections present: {', '.join(present) or 'none'}; "
          f"explorer: {sum(len(s['mazes']) for s in explorer['suites']) if explorer else 0} mazes; "
          f"{len(page) / 1e6:.2f} MB page, {len(assets)} pictures")


if __name__ == "__main__":
    stage_main(main)
