"""The training run's log: step-wise curves and the final metrics, written with dvclive.

Why dvclive: its files are what DVC reads (``dvc plots``, ``dvc metrics``, ``dvc exp show``), and
it writes them as training goes, so DVC's VS Code extension and Studio show live progress. Since
dvclive 1.0 a step file has a timestamp column only with ``timestamp=True``; with no report, no
system monitor and no dvc.yaml of its own, identical rows give byte-identical files.

Rows are also kept in memory and saved in every training checkpoint: a resumed run replays them
into a fresh log, so it writes the same files as an unbroken one. Values are rounded to 6
significant digits so a diff shows meaningful changes only.

Files under the log's directory (docs/metrics.md):

    metrics.json                  the headline (HEADLINE_METRICS) plus dvclive's ``step``
    plots/metrics/<curve>/<k>.tsv  one curve per value: ``step<TAB><k>``
"""

from __future__ import annotations

from pathlib import Path

# What metrics.json (a DVC metric) keeps of a run's final metrics: the headline. The rest
# (train loss, tokens seen, ...) lives in the curves and in the stage's printout.
HEADLINE_METRICS = ("val_exact_path", "val_loss", "val_path_loss")


def _round(value: float | int) -> float | int:
    if isinstance(value, int):
        return value
    return float(f"{float(value):.6g}")


def _quiet_live(live_dir: Path):
    """A dvclive ``Live`` that writes files only: no report, dvc.yaml, experiment or monitor."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class _Live(Live):
        def _init_dvc(self):
            try:
                super()._init_dvc()
            except SCMError:  # dvclive 3.49 asks git for HEAD before checking the repo has commits
                self._dvc_repo = None

    return _Live(str(live_dir), resume=False, report=None, dvcyaml=None, save_dvc_exp=False,
                 monitor_system=False)


class RunLog:
    """Rows of named curves (``train``, ``val``, ...), each row a dict with a ``step`` key.

    With ``live_dir`` every row also goes to a dvclive ``Live`` there, as it is logged.
    """

    def __init__(self, live_dir: str | Path | None = None) -> None:
        self.curves: dict[str, list[dict]] = {}
        self.live_dir = None if live_dir is None else Path(live_dir)
        self._live = None

    def _sink(self):
        if self.live_dir is not None and self._live is None:
            self._live = _quiet_live(self.live_dir)
        return self._live

    def _emit(self, curve: str, row: dict) -> None:
        live = self._sink()
        if live is None:
            return
        live.step = row["step"]
        for key, value in row.items():
            if key != "step":
                live.log_metric(f"{curve}/{key}", value)

    def log(self, curve: str, step: int, **values: float) -> None:
        row = {"step": int(step), **{k: _round(v) for k, v in values.items()}}
        rows = self.curves.setdefault(curve, [])
        if rows and set(rows[0]) != set(row):
            raise ValueError(f"curve {curve!r} got columns {sorted(row)}, expected {sorted(rows[0])}")
        rows.append(row)
        self._emit(curve, row)

    def last(self, curve: str) -> dict | None:
        rows = self.curves.get(curve)
        return rows[-1] if rows else None

    # Checkpoints carry the rows, so a resumed run writes the same curves as an unbroken one.
    def state_dict(self) -> dict:
        return {"curves": {k: [dict(r) for r in v] for k, v in self.curves.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore the rows and replay them, in step order, into the live log."""
        self.curves = {k: [dict(r) for r in v] for k, v in state["curves"].items()}
        replay = sorted(((r["step"], i, name, r) for i, (name, rows) in enumerate(self.curves.items())
                         for r in rows), key=lambda t: (t[0], t[1]))
        for _, _, name, row in replay:
            self._emit(name, row)

    def finish(self, metrics: dict[str, float | int]) -> None:
        """Write the headline of ``metrics`` as the summary (metrics.json) and close the log."""
        live = self._sink()
        if live is None:
            return
        live.summary = {k: _round(metrics[k]) for k in HEADLINE_METRICS}
        live.end()
        self._live = None
