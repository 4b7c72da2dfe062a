"""Training dynamics: probe scores on every weight snapshot beside the model's exact-path rate.

For each snapshot (``models/snapshots/step_*``, written by stage train) the probes of
``dynamics.probes`` are fitted on that snapshot's residual streams over the first
``dynamics.n_mazes`` mazes of ``activations.dataset``, with the usual controls (the random-init
model and permuted labels, mazesearch.interp.probes), and scored on held-out mazes at the layer
chosen on validation mazes; the snapshot's exact-path rate (teacher forced, the same mazes) is
measured beside them. The question (arXiv 2312.02566 found the two jumps together): does the
representation appear before, with, or after the behaviour?

*Jump step* of a curve: the first step at which it has made half of its rise from its first
value (the initial weights, step 0) to its maximum (linear interpolation between snapshots;
None when it rises by less than MIN_RISE).
*Lead* of a probe: jump step of the exact-path rate minus jump step of the probe score, in
training steps (positive: the probe jumps first). The resolution is the snapshot spacing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

JUMP_FRACTION = 0.5  # of the rise from the first value to the maximum
MIN_RISE = 0.05  # a smaller rise (in score units) is no jump: held-out scores wobble by ~0.01-0.03


def jump_step(steps, values, fraction: float = JUMP_FRACTION, min_rise: float = MIN_RISE) -> float | None:
    """The first step where ``values`` reach ``first + fraction * (max - first)``, interpolated
    linearly between points; None if the curve rises by less than ``min_rise`` (no jump to
    place) or has fewer than two defined values."""
    steps, values = np.asarray(steps, np.float64), np.asarray(values, np.float64)
    ok = ~np.isnan(values)
    steps, values = steps[ok], values[ok]
    if len(values) < 2 or values.max() - values[0] < min_rise:
        return None
    level = values[0] + fraction * (values.max() - values[0])
    k = int(np.argmax(values >= level))  # first index at or above the level (k >= 1)
    s0, s1, v0, v1 = steps[k - 1], steps[k], values[k - 1], values[k]
    return float(s0 + (level - v0) / (v1 - v0) * (s1 - s0))


def lead_steps(steps, accuracy, score) -> float | None:
    """Jump step of ``accuracy`` minus that of ``score`` (positive: the score jumps first)."""
    a, p = jump_step(steps, accuracy), jump_step(steps, score)
    return None if a is None or p is None else a - p


def snapshot_row(model, control_store, tokens, mazes, vocab, probes: list[str], probes_cfg, n_mazes: int,
                 batch_size: int) -> dict:
    """One snapshot's exact-path rate and each probe's held-out score at its val-chosen layer.
    ``control_store``: the random-init control's activations over the same mazes (the same for
    every snapshot, so the caller extracts them once)."""
    from mazesearch.interp.activations import extract_activations
    from mazesearch.interp.probe_report import headline
    from mazesearch.interp.probes import run_probes
    from mazesearch.model.train import evaluate_teacher_forced

    exact = evaluate_teacher_forced(model, tokens, np.arange(n_mazes), vocab.pad_id, batch_size)["exact_path"]
    with tempfile.TemporaryDirectory() as tmp:
        store = extract_activations(model, tokens, vocab, mazes.grid_n, Path(tmp) / "trained", n_mazes=n_mazes,
                                    batch_size=batch_size)
        results, _ = run_probes(mazes, store, control_store, probes_cfg, names=probes, progress=False)
    head = headline(results)
    row = {"exact_path": exact}
    for name in probes:
        row[name] = head[name]["test_score"]
        row[f"{name}_layer"] = head[name]["best_layer"]
    return row


def summarize(steps: list[int], rows: list[dict], probes: list[str]) -> dict:
    """The DVC metric: the exact-path jump step, each probe's jump step and lead (None: no jump)."""
    exact = [r["exact_path"] for r in rows]
    out = {"jump_step_exact_path": jump_step(steps, exact)}
    for name in probes:
        score = [np.nan if r[name] is None else r[name] for r in rows]
        out[f"jump_step_{name}"] = jump_step(steps, score)
        out[f"lead_steps_{name}"] = lead_steps(steps, exact, score)
    return {k: None if v is None else round(float(v), 1) for k, v in out.items()}


def rises(rows: list[dict], names: list[str]) -> dict:
    """Each curve's rise from its first value to its maximum (details: is there a jump at all?)."""
    out = {}
    for name in names:
        defined = [r[name] for r in rows if r[name] is not None]
        out[name] = round(max(defined) - defined[0], 4) if len(defined) > 1 else None
    return out


def curve_csv(steps: list[int], rows: list[dict], probes: list[str]) -> str:
    """``curve.csv`` for ``dvc plots``: step, exact_path, then each probe's score (empty: undefined)."""
    lines = [",".join(["step", "exact_path", *probes])]
    for step, r in zip(steps, rows):
        cells = [str(step)] + ["" if r[k] is None else f"{r[k]:.6g}" for k in ("exact_path", *probes)]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"
