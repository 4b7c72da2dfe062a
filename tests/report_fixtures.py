"""A tiny finished run for the report tests: the interp fixture's 3x3 run plus what evaluate and a
few other stages would have written (predictions of one suite, a reports/ tree with a picture)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from interp_fixtures import build_tiny_run

REPORT = {"dataset": "val", "n_mazes": 32, "batch_size": 16, "num_threads": 1, "suites": ["probe"],
          "mazes_per_suite": 3, "probe_max_iter": 100}


def write_predictions(root: Path, suite: str = "probe", n: int = 12) -> pd.DataFrame:
    """Predictions of ``suite`` (dataset probe): the true path for even rows, the path cut after
    its first move for odd rows (so failures and successes both occur)."""
    from mazesearch.data.maze import read_mazes
    from mazesearch.data.tokens import PATH_END, Vocab

    vocab = Vocab.from_json(root / "data" / "vocab.json")
    mazes = read_mazes(root / "data" / "mazes" / "probe.parquet")
    rows = []
    for i in range(n):
        path = mazes.path(i).tolist()
        walked = path if i % 2 == 0 else path[:2]
        n_ = mazes.grid_n
        toks = [int(vocab.unary_id[c // n_, c % n_]) for c in walked] + [vocab.id(PATH_END)]
        rows.append({"maze_id": np.uint64(mazes.maze_id[i]), "predicted_tokens": toks, "predicted_path": walked,
                     "exact_path": i % 2 == 0})
    frame = pd.DataFrame(rows)
    out = root / "data" / "predictions" / f"{suite}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out)
    return frame


def write_reports(root: Path) -> None:
    """A small reports/ tree: one dataset stats file and one picture (a real matplotlib PNG, with
    matplotlib's default metadata, which the report must strip)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = root / "reports" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "probe.json").write_text(json.dumps({"n_mazes": 40, "grid_n": 3, "generator": "dfs"}))
    pictures = root / "reports" / "eval" / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(pictures / "probe.png")  # default metadata: Software tEXt chunk
    plt.close(fig)


def build_report_run(root: Path, steps: int = 60) -> Path:
    build_tiny_run(root, steps=steps)
    write_predictions(root)
    write_reports(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"] = {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_head": 16, "d_mlp": 64, "n_ctx": 64}
    params["evaluate"] = {"suites": {"probe": {"dataset": "probe"}}}
    params["report"] = dict(REPORT)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def report_args(root: Path, out: Path) -> list[str]:
    return ["--params", str(root / "params.yaml"), "--model-dir", str(root / "models"),
            "--tokens-dir", str(root / "data" / "tokens"), "--mazes-dir", str(root / "data" / "mazes"),
            "--vocab", str(root / "data" / "vocab.json"), "--predictions-dir", str(root / "data" / "predictions"),
            "--reports", str(root / "reports"), "--out-dir", str(out)]
