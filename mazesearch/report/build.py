"""Gather the maze explorer's inputs from a run directory and build its document (the JSON the
page embeds; layout in docs/report.md). Missing inputs do not fail the report: the explorer then
says which stage would write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mazesearch.data.maze import edge_endpoints, read_mazes
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode
from mazesearch.io import InputError
from mazesearch.params import Params, ReportSpec, suite_tokenizer


def _missing(paths: list[tuple[Path, str]]) -> str | None:
    gone = [f"{p} (`dvc repro {stage}`)" for p, stage in paths if not p.exists()]
    return None if not gone else "The explorer needs " + ", ".join(gone) + "."


def build_explorer(params: Params, spec: ReportSpec, device, *, model_dir: Path, mazes_dir: Path,
                   tokens_dir: Path, predictions_dir: Path, vocab_path: Path) -> tuple[dict | None, str]:
    """(document, note): the note says what the sample is, or why there is no explorer."""
    need = [(vocab_path, "tokenize@train"), (model_dir / "model.safetensors", "train"),
            (mazes_dir / f"{spec.dataset}.parquet", f"generate@{spec.dataset}"),
            (tokens_dir / f"{spec.dataset}.parquet", f"tokenize@{spec.dataset}")]
    for suite in spec.suites:
        dataset = params.evaluate.suites[suite].dataset
        need += [(predictions_dir / f"{suite}.parquet", f"evaluate@{suite}"),
                 (mazes_dir / f"{dataset}.parquet", f"generate@{dataset}")]
    missing = _missing(need)
    if missing:
        return None, missing
    if params.tokenizer.coord != "unary" or any(suite_tokenizer(params, s)["coord"] != "unary" for s in spec.suites):
        return None, "The explorer draws cells named by one token each: it needs tokenizer.coord = unary."

    from mazesearch.model.run_loader import control_model, first_rows
    from mazesearch.report.explorer import explore, fit_future_path_probes, is_exact, pick_rows

    vocab = Vocab.from_json(vocab_path)
    fit_tokens, fit_mazes = first_rows("report", spec.dataset, spec.n_mazes, tokens_dir=tokens_dir,
                                       mazes_dir=mazes_dir, vocab=vocab, clip=True)

    picked = []  # (suite, dataset, mazes, tokens, predicted tokens, exact flags)
    empty = []  # suites whose predictions file holds no maze
    longest = int(fit_tokens.lengths.max(initial=0))
    for suite in spec.suites:
        dataset = params.evaluate.suites[suite].dataset
        pred_path = predictions_dir / f"{suite}.parquet"
        try:
            preds = pd.read_parquet(pred_path, columns=["maze_id", "predicted_tokens", "exact_path"])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(pred_path, f"cannot read the predictions ({exc})", f"re-run `dvc repro evaluate@{suite}`") from None
        if len(preds) == 0:
            empty.append(suite)
            continue
        mazes = read_mazes(mazes_dir / f"{dataset}.parquet")
        row_of = {int(m): i for i, m in enumerate(mazes.maze_id)}
        rows = pick_rows(preds["exact_path"].to_numpy(), spec.mazes_per_suite)
        ids = preds["maze_id"].to_numpy(np.uint64)[rows]
        if any(int(m) not in row_of for m in ids):
            raise InputError(pred_path, f"holds mazes that are not in data/mazes/{dataset}.parquet",
                             f"re-run `dvc repro evaluate@{suite}`")
        mazes = mazes.take(np.array([row_of[int(m)] for m in ids], dtype=np.int64))
        tokens = encode(mazes, vocab, TokenizerOptions(**suite_tokenizer(params, suite)))
        predicted = [np.asarray(p, dtype=np.int64) for p in preds["predicted_tokens"].to_numpy()[rows]]
        exact = is_exact(preds["exact_path"].to_numpy()[rows]).tolist()
        longest = max([longest] + [int(tokens.prompt_len[i]) + len(p) for i, p in enumerate(predicted)])
        picked.append((suite, dataset, mazes, tokens, predicted, exact))

    import torch  # (after the predictions are read: a bad file fails before the slow imports)

    from mazesearch.interp.bridge import to_bridge  # imports transformer_lens: slow
    from mazesearch.model.gpt import load_gpt, with_context

    trained = load_gpt(model_dir, device=device, vocab=vocab, vocab_path=vocab_path)
    if longest > trained.cfg.n_ctx and trained.cfg.positional == "learned":
        raise InputError(model_dir / "model_config.json", f"n_ctx {trained.cfg.n_ctx} is shorter than the "
                         f"explorer's longest sequence ({longest} tokens) and positions are learned")
    trained = with_context(trained, longest).eval()
    control = control_model(trained, spec.control_seed)
    with torch.no_grad():
        bridges = {"trained": to_bridge(trained), "random_init": to_bridge(control)}
    probes, f1 = fit_future_path_probes(bridges, fit_mazes, fit_tokens, vocab.pad_id, C=spec.probe_C,
                                        max_iter=spec.probe_max_iter, test_frac=spec.probe_test_frac,
                                        seed=spec.seed, batch_size=spec.batch_size)
    L = trained.cfg.n_layers
    suites = []
    for suite, dataset, mazes, tokens, predicted, exact in picked:
        records = explore(bridges["trained"], vocab, mazes, tokens, predicted, probes)
        for rec, ok in zip(records, exact):
            rec["exact"] = ok
        suites.append({"name": suite, "dataset": dataset, "grid_n": int(mazes.grid_n), "mazes": records})
    from mazesearch.viz.overlay import scheme

    doc = {
        "n_layers": L, "n_heads": trained.cfg.n_heads, "style": scheme(),
        "layer_names": ["embedding"] + [f"after block {i}" for i in range(L)],
        "edges": {str(s["grid_n"]): edge_endpoints(s["grid_n"]).ravel().tolist() for s in suites},
        "probe": {"target": "future_path", "dataset": spec.dataset, "n_mazes": len(fit_mazes),
                  "f1": {k: [None if np.isnan(v) else round(float(v), 4) for v in vals] for k, vals in f1.items()}},
        "suites": suites,
    }
    shown = [s for s in spec.suites if s not in empty]
    note = (f"{spec.mazes_per_suite} mazes per suite ({', '.join(shown)}): failures first, up to half, "
            f"then successes (params report.suites, report.mazes_per_suite).")
    if empty:
        note += f" No evaluated mazes in: {', '.join(empty)}."
    return doc, note
