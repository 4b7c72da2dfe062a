"""A stage's numbers as its files hold them: the headline metrics and the details beside them.

``stage_results(root, "dla")`` reads ``reports/dla/metrics.json`` and ``reports/dla/details.json``.
The paths per stage are dvc.yaml's (tests/test_notebook_results.py checks this table against it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mazesearch.io import read_json

# stage -> (metrics, details): paths under the run root; "{key}" is the suite or dataset of a
# foreach stage; None: the stage writes no such JSON file.
_SAME = {stage: (f"reports/{stage}/metrics.json", f"reports/{stage}/details.json")
         for stage in ("dynamics", "geometry", "logit_lens", "dla", "reach", "clusters", "parallel", "counterfactuals",
                       "patching", "steering", "faithfulness")}
FILES: dict[str, tuple[str | None, str | None]] = {
    "generate": ("reports/data/{key}.json", "reports/data/details/{key}.json"),
    "train": ("reports/train/metrics.json", None),  # the curves: reports/train/plots/
    "evaluate": ("reports/eval/suites/{key}.json", "reports/eval/details/{key}.json"),
    "eval_summary": (None, "reports/eval/summary.json"),  # every suite's headline and intervals
    "probes": ("reports/probes/metrics/*.json", "reports/probes/details.json"),  # metrics: one file per probe
    "heads": ("reports/heads/metrics.json", None),  # the scores: reports/heads/scores.csv
    **_SAME,
}


@dataclasses.dataclass(frozen=True)
class StageResults:
    """``metrics``: the stage's DVC metric (``dvc metrics show``); for probes ``{probe: metrics}``.
    ``details``: everything else it writes as JSON. Either is None when the stage writes none."""

    stage: str
    metrics: dict | None
    details: dict | None
    files: tuple[str, ...]  # what was read, relative to the run root


def _missing(root: Path, rel: str, stage: str) -> FileNotFoundError:
    return FileNotFoundError(f"{root / rel}: missing; build it with `dvc repro {stage}` in {root.resolve()}")


def stage_results(root: str | Path, stage: str) -> StageResults:
    """``stage`` is a dvc.yaml stage name, ``evaluate@<suite>`` / ``generate@<dataset>`` for the
    foreach stages. A missing file raises ``FileNotFoundError`` naming it and the ``dvc repro``
    command that writes it; a damaged one the pipeline's ``InputError``."""
    root = Path(root)
    name, _, key = stage.partition("@")
    if name not in FILES:
        raise ValueError(f"stage {stage!r} writes no metrics or details JSON; stages with results: "
                         f"{', '.join(sorted(FILES))} (evaluate@<suite>, generate@<dataset>)")
    metrics_rel, details_rel = FILES[name]
    foreach = "{key}" in (metrics_rel or "") + (details_rel or "")
    if foreach != bool(key):
        want = f"{name}@<{'suite' if name == 'evaluate' else 'dataset'}>" if foreach else name
        raise ValueError(f"stage {stage!r}: name it {want}")
    metrics_rel = metrics_rel and metrics_rel.format(key=key)
    details_rel = details_rel and details_rel.format(key=key)
    hint = f"re-run `dvc repro {stage}`"
    files, metrics, details = [], None, None
    if metrics_rel and "*" in metrics_rel:  # one headline file per probe
        found = sorted((root / metrics_rel).parent.glob(Path(metrics_rel).name))
        if not found:
            raise _missing(root, metrics_rel, stage)
        metrics = {p.stem: read_json(p, "stage metrics", hint) for p in found}
        files += [str(p.relative_to(root)) for p in found]
    elif metrics_rel:
        if not (root / metrics_rel).is_file():
            raise _missing(root, metrics_rel, stage)
        metrics = read_json(root / metrics_rel, "stage metrics", hint)
        files.append(metrics_rel)
    if details_rel:
        if not (root / details_rel).is_file():
            raise _missing(root, details_rel, stage)
        details = read_json(root / details_rel, "stage details", hint)
        files.append(details_rel)
    return StageResults(stage=stage, metrics=metrics, details=details, files=tuple(files))
