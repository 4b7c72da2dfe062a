"""A tiny deterministic run logger: step-wise CSV curves plus a final metrics JSON.

Why not dvclive: it stamps wall-clock times into its step files, and this project promises that
identical params give byte-identical outputs. The files written here are exactly what
``dvc plots show`` (CSV with a ``step`` column) and ``dvc metrics show`` (flat JSON) read.
Numbers are rounded to 6 significant digits so a file diff shows meaningful changes only.
"""

from __future__ import annotations

import json
from pathlib import Path

from mazesearch.io import write_text_atomic


def _round(value: float | int) -> float | int:
    if isinstance(value, int):
        return value
    return float(f"{float(value):.6g}")


class RunLog:
    """Rows of named curves (``train``, ``val``, ...), each row a dict with a ``step`` key."""

    def __init__(self) -> None:
        self.curves: dict[str, list[dict]] = {}

    def log(self, curve: str, step: int, **values: float) -> None:
        row = {"step": int(step), **{k: _round(v) for k, v in values.items()}}
        rows = self.curves.setdefault(curve, [])
        if rows and set(rows[0]) != set(row):
            raise ValueError(f"curve {curve!r} got columns {sorted(row)}, expected {sorted(rows[0])}")
        rows.append(row)

    def last(self, curve: str) -> dict | None:
        rows = self.curves.get(curve)
        return rows[-1] if rows else None

    # Checkpoints carry the rows, so a resumed run writes the same curves as an unbroken one.
    def state_dict(self) -> dict:
        return {"curves": {k: [dict(r) for r in v] for k, v in self.curves.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.curves = {k: [dict(r) for r in v] for k, v in state["curves"].items()}

    def write_curves(self, curves_dir: str | Path) -> None:
        """One ``<curve>.csv`` per curve under ``curves_dir``."""
        for name, rows in self.curves.items():
            cols = list(rows[0])
            lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]
            write_text_atomic(Path(curves_dir) / f"{name}.csv", "\n".join(lines) + "\n")


# What reports/train/metrics.json (a DVC metric) keeps of a run's final metrics: the headline.
# The rest (train loss, tokens seen, ...) lives in the curves and in the stage's printout.
HEADLINE_METRICS = ("val_exact_path", "val_loss", "val_path_loss", "steps")


def write_metrics(path: str | Path, metrics: dict[str, float | int], keys: tuple[str, ...] | None = None) -> None:
    """Flat metrics JSON, values rounded (see module doc): the given ``keys`` in that order, or
    every key of ``metrics`` in its order."""
    chosen = metrics if keys is None else {k: metrics[k] for k in keys}
    text = json.dumps({k: _round(v) for k, v in chosen.items()}, indent=2)
    write_text_atomic(path, text + "\n")
