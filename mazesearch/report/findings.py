"""The report's "Findings": one line per hypothesis, its number beside its control and a verdict
(supported, contradicted or open) by one stated rule, read from the stages' outputs.

The rule (:func:`verdict`, printed on the page by :data:`RULE`):

* **supported** when the score beats its control with non-overlapping 95% intervals (both have
  one), or else by at least the margin (:data:`MARGIN`), the score's interval, when it has one,
  lying wholly above the control;
* **contradicted** when the control does at least as well (score <= control);
* **open** otherwise (ahead, but within the margin or with overlapping intervals), or when a
  number is missing.

Some hypotheses count things rather than rates; each says how it maps onto the rule
(faithfulness: fewer heads is better, the margin is two heads; reach: the number of maze moves
decodable above control by the linear or the MLP probe, the larger, where 0 contradicts and 2 or
more supports lookahead beyond a neighbour; explore-then-discard is the parallel stage's yes/no
shape flag). The issue-29 instruments compare with the stronger of their controls.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from mazesearch.evaluation.stats import wilson_interval

MARGIN = 0.05
HEAD_MARGIN = 2  # faithfulness: heads fewer than the random order
RULE = ("A hypothesis is supported when its score beats its control with non-overlapping 95% intervals "
        f"(where both have one), or else by at least {MARGIN} with the score's interval, if any, wholly above "
        "the control; contradicted when the control does at least as well (score ≤ control); open otherwise "
        "(ahead but within the margin or the intervals, or a number missing). Faithfulness counts heads (fewer "
        f"is better; supported with at least {HEAD_MARGIN} fewer than a random order); reach counts maze moves "
        "decodable above control by the linear or the MLP probe, the larger (0 contradicts, 1 is open, 2 or "
        "more supports).")
SUPPORTED, CONTRADICTED, OPEN = "supported", "contradicted", "open"


@dataclasses.dataclass(frozen=True)
class Finding:
    hypothesis: str  # what would be true
    evidence: str    # the numbers, score beside its control
    verdict: str     # SUPPORTED / CONTRADICTED / OPEN
    source: str      # the file(s) read, relative to reports/


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def verdict(score, control, lo=None, hi=None, control_lo=None, control_hi=None, margin: float = MARGIN) -> str:
    """The rule (module docstring) for one score against its control; intervals optional."""
    if not (_finite(score) and _finite(control)):
        return OPEN
    if score <= control:
        return CONTRADICTED
    if _finite(lo) and _finite(control_hi):  # both intervals
        return SUPPORTED if lo > control_hi else OPEN
    if score - control >= margin and (not _finite(lo) or lo > control):
        return SUPPORTED
    return OPEN


def rate_interval(rate, n) -> tuple[float | None, float | None]:
    """95% Wilson interval of a rate over n trials (None, None when either is missing)."""
    if not (_finite(rate) and _finite(n)) or n <= 0:
        return None, None
    return wilson_interval(min(max(rate, 0.0), 1.0) * n, int(n))


def _f(x, d: int = 2) -> str:
    return f"{x:.{d}f}" if _finite(x) else "–"


def _iv(x, lo, hi) -> str:
    return f"{_f(x)} [{_f(lo)}, {_f(hi)}]" if _finite(lo) and _finite(hi) else _f(x)


def _read(reports: Path, rel: str):
    try:
        return json.loads((reports / rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rows(reports: Path, rel: str, raw: bool = False) -> list:
    """A CSV file's rows as dicts (``raw``: as lists, the header first); [] when unreadable."""
    import csv

    try:
        with open(reports / rel, newline="", encoding="utf-8") as f:
            return list(csv.reader(f) if raw else csv.DictReader(f))
    except (OSError, ValueError, csv.Error):
        return []


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# ------------------------------------------------------------------------------ per stage


def _solves(reports: Path) -> list[Finding]:
    s = _read(reports, "eval/summary.json")
    if not isinstance(s, dict) or not isinstance(s.get("test"), dict):
        return []
    r = s["test"]
    m, b = r.get("model_exact_path"), r.get("baseline_exact_path")
    ml, mh, bl, bh = (r.get(k) for k in ("model_exact_path_lo", "model_exact_path_hi",
                                         "baseline_exact_path_lo", "baseline_exact_path_hi"))
    return [Finding("the model finds shortest paths in distribution (suite test) better than a random walker",
                    f"exact path {_iv(m, ml, mh)} vs random-at-forks baseline {_iv(b, bl, bh)}",
                    verdict(m, b, ml, mh, bl, bh), "eval/summary.json")]


def _generalises(reports: Path, train_side: int | None) -> list[Finding]:
    if train_side is None:
        return []
    by_suite: dict[tuple, dict] = {}
    for r in _rows(reports, "eval/size_plot.csv", raw=True)[1:]:
        # size, suite, placement, series..., exact, lo, hi: files written before the series name was
        # quoted spill "model, placed" over two fields, so the fixed columns are taken from both ends
        size = _num(r[0]) if len(r) >= 7 else None
        if size is None or int(size) != train_side + 1:
            continue
        who = ",".join(r[3:-3]).split("(")[0].split(",")[0].strip()
        by_suite.setdefault((r[1], r[2]), {})[who] = tuple(_num(x) for x in r[-3:])
    out = []
    for (suite, placement), e in by_suite.items():
        (m, ml, mh), (b, bl, bh) = e.get("model", (None,) * 3), e.get("baseline", (None,) * 3)
        out.append(Finding(f"it generalises one size up: {train_side + 1}×{train_side + 1} mazes ({suite}, {placement}), "
                           f"larger than any training maze ({train_side}×{train_side})",
                           f"exact path {_iv(m, ml, mh)} vs baseline {_iv(b, bl, bh)}",
                           verdict(m, b, ml, mh, bl, bh), "eval/size_plot.csv"))
    return out


def _probes(reports: Path) -> list[Finding]:
    folder = reports / "probes/metrics"
    out = []
    details = _read(reports, "probes/details.json")
    details = details if isinstance(details, dict) else {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        m = _read(reports, f"probes/metrics/{path.name}")
        if not isinstance(m, dict):
            continue
        score = m.get("test_score")
        controls = {name: score - m[key] for name, key in (("random-init", "selectivity_vs_random_init"),
                                                           ("permuted labels", "selectivity_vs_permuted"))
                    if _finite(score) and _finite(m.get(key))}
        metric = str((details.get(path.stem) or {}).get("main_score") or "test score")
        if not controls:
            out.append(Finding(f"{path.stem} is linearly decodable beyond its controls", f"{metric} {_f(score)}; "
                               "no control", OPEN, f"probes/metrics/{path.name}"))
            continue
        name, control = max(controls.items(), key=lambda kv: kv[1])  # the stronger control decides
        void = (details.get(path.stem) or {}).get("void_controls") or {}
        rest = "; ".join([f"{k} {_f(v)}" for k, v in controls.items() if k != name]
                         + [f"{k.replace('_', ' ')} control void: the real task again" for k in void])
        out.append(Finding(f"{path.stem} is linearly decodable beyond its controls",
                           f"{metric.replace('_', ' ')} {_f(score)} vs {name} {_f(control)}" + (f" ({rest})" if rest else ""),
                           verdict(score, control), f"probes/metrics/{path.name}"))
    return out


def _heads(reports: Path) -> list[Finding]:
    m = _read(reports, "heads/metrics.json")
    if not isinstance(m, dict):
        return []
    ci = {(r.get("hypothesis"), r.get("layer"), r.get("head")): (_num(r.get("ci_low")), _num(r.get("ci_high")),
                                                               _num(r.get("chance")))
          for r in _rows(reports, "heads/scores.csv")}
    out = []
    for hyp, d in m.items():
        if not isinstance(d, dict) or "score" not in d:
            continue
        lo, hi, chance = ci.get((hyp, str(d.get("layer")), str(d.get("head"))), (None, None, d.get("chance")))
        out.append(Finding(f"a head attends to {hyp.replace('_', ' ')} (top head L{d.get('layer')}H{d.get('head')})",
                           f"attention {_iv(d.get('score'), lo, hi)} vs random-init model's best head "
                           f"{_f(d.get('control_best'))} (chance {_f(chance)})",
                           verdict(d.get("score"), d.get("control_best"), lo, hi), "heads/metrics.json, heads/scores.csv"))
    return out


def _faithfulness(reports: Path) -> list[Finding]:
    m = _read(reports, "faithfulness/metrics.json")
    if not isinstance(m, dict):
        return []
    n, kr, kx = m.get("n_heads"), m.get("k_ranked"), m.get("k_random")
    # fewer heads is better: the score is -k (a k that never reaches the level counts as n + 1)
    worst = (n + 1) if _finite(n) else None
    score = -(kr if _finite(kr) else worst) if worst is not None else None
    control = -(kx if _finite(kx) else worst) if worst is not None else None
    v = OPEN if kr is None and kx is None else verdict(score, control, margin=HEAD_MARGIN)
    return [Finding(f"a few heads carry the computation: the heads patching ranks first keep ≥ {m.get('level')} of the "
                    "exact-path rate with fewer heads than a random order",
                    f"{kr if kr is not None else 'never'} of {n} heads vs {kx if kx is not None else 'never'} in random order",
                    v, "faithfulness/metrics.json")]


def _reach(reports: Path) -> list[Finding]:
    m = _read(reports, "reach/metrics.json")
    if not isinstance(m, dict):
        return []
    det = _read(reports, "reach/details.json")
    th = det.get("thresholds") if isinstance(det, dict) else None
    th = th if isinstance(th, dict) else {}
    mlp = m.get("mlp_largest")  # the MLP probe's largest k over layers, per anchor (absent in older reports)
    mlp = mlp if isinstance(mlp, dict) else {}
    out = []
    for anchor, layers in m.items():
        if anchor == "mlp_largest":
            continue
        ks = [v for v in (layers or {}).values() if _finite(v)] if isinstance(layers, dict) else []
        if not ks:
            continue
        k_mlp = mlp.get(anchor) if _finite(mlp.get(anchor)) else None
        # either probe's reach counts: both are gated on their lead over the controls
        best = max(ks + ([k_mlp] if k_mlp is not None else []))
        v = CONTRADICTED if best == 0 else SUPPORTED if best >= 2 else OPEN
        moves = lambda k: f"{k} move{'s' * (k != 1)}"  # noqa: E731
        by_mlp = "" if k_mlp is None else f", MLP probe {moves(k_mlp)} (its gap over its own controls)"
        out.append(Finding(f"the model represents the maze several moves around the {anchor} (lookahead beyond a "
                           "neighbour)", f"largest reach at any layer: linear probe {moves(max(ks))}{by_mlp} "
                           f"(decodable: balanced accuracy ≥ {th.get('min_balanced_accuracy', '?')} and ≥ "
                           f"{th.get('min_selectivity', '?')} above the stronger control)", v, "reach/metrics.json"))
    return out


def _steering(reports: Path) -> list[Finding]:
    m = _read(reports, "steering/metrics.json")
    d = m.get("target_move") if isinstance(m, dict) else None
    if not isinstance(d, dict):
        return []
    summary = ((_read(reports, "steering/details.json") or {}).get("summary") or {}).get("target_move") or {}
    n = d.get("n_pairs", summary.get("n_pairs"))  # the headline leaves the pair count to details.json
    if "mean_diff_success" in d:
        s, c = d.get("mean_diff_success"), d.get("mean_diff_random_success")
        (lo, hi), (clo, chi) = rate_interval(s, n), rate_interval(c, n)
        return [Finding("the target is carried at its token: adding the mean difference of two targets' activations "
                        "there retargets the path",
                        f"mean-difference retargeting {_iv(s, lo, hi)} of ceiling {_f(d.get('ceiling'))} vs same-norm "
                        f"random {_iv(c, clo, chi)} ({n} pairs)", verdict(s, c, lo, hi, clo, chi),
                        "steering/metrics.json")]
    s, c = d.get("probe_success"), d.get("random_success")
    (lo, hi), (clo, chi) = rate_interval(s, n), rate_interval(c, n)
    return [Finding("the target probe's direction steers the path to a new target",
                    f"probe steering {_iv(s, lo, hi)} vs same-norm random {_iv(c, clo, chi)} ({n} pairs)",
                    verdict(s, c, lo, hi, clo, chi), "steering/metrics.json")]


def _plan_instruments(reports: Path) -> list[Finding]:
    """The research plan's remaining hypotheses (issue 29): each read from its stage's files."""
    out = []
    b = _read(reports, "heads/bottleneck.json")
    if isinstance(b, dict) and isinstance(b.get("trained"), dict) and isinstance(b.get("random"), dict):
        t, r = b["trained"], b["random"]
        out.append(Finding(f"bottleneck cells get more attention than matched cells (top head L{t.get('layer')}H{t.get('head')})",
                           f"bottleneck / matched mass {_iv(t.get('ratio'), t.get('ci_low'), t.get('ci_high'))} vs "
                           f"random-init model's best head {_iv(r.get('ratio'), r.get('ci_low'), r.get('ci_high'))}",
                           verdict(t.get("ratio"), r.get("ratio"), t.get("ci_low"), t.get("ci_high"), r.get("ci_low"),
                                   r.get("ci_high")), "heads/bottleneck.json"))
    g = _read(reports, "geometry/metrics.json")
    s = g.get("svd") if isinstance(g, dict) else None
    if isinstance(s, dict):
        control = max((v for v in (s.get("random_init"), s.get("spectrum_matched")) if _finite(v)), default=None)
        out.append(Finding("the top heads' singular directions are laid out like the lattice (rows or columns)",
                           f"SVD lattice alignment {_f(s.get('trained'))} vs random-init {_f(s.get('random_init'))}, "
                           f"spectrum-matched {_f(s.get('spectrum_matched'))}", verdict(s.get("trained"), control),
                           "geometry/metrics.json"))
    c = _read(reports, "clusters/metrics.json")
    for label, d in (c.items() if isinstance(c, dict) else []):
        if isinstance(d, dict):
            control = max((v for v in (d.get("random_init"), d.get("permuted")) if _finite(v)), default=None)
            out.append(Finding(f"path-position residuals cluster by {label.replace('_', ' ')}",
                               f"kNN purity over chance {_f(d.get('trained'), 3)} vs random-init "
                               f"{_f(d.get('random_init'), 3)}, permuted {_f(d.get('permuted'), 3)}",
                               verdict(d.get("trained"), control), "clusters/metrics.json"))
    p = _read(reports, "parallel/metrics.json")
    a = p.get("alternatives") if isinstance(p, dict) else None
    if isinstance(a, dict):
        out.append(Finding("cells on alternative branches not yet passed are represented",
                           f"balanced accuracy {_f(a.get('trained'))} vs stronger control {_f(a.get('stronger_control'))} "
                           f"(true path ahead {_f(a.get('ahead'))})", verdict(a.get("trained"), a.get("stronger_control")),
                           "parallel/metrics.json"))
        shape = (((_read(reports, "parallel/details.json") or {}).get("versions") or {}).get("alternatives") or {}).get(
            "shape") or {}
        flag = shape.get("explore_then_discard")
        out.append(Finding("alternatives are explored, then discarded (their gap over control peaks at an inner layer)",
                           f"peak at {shape.get('peak_layer')}, drop to the last layer {_f(shape.get('drop_after_peak'))}",
                           OPEN if flag is None else SUPPORTED if flag else CONTRADICTED, "parallel/details.json"))
    pm = _read(reports, "patching/metrics.json")
    paths: dict = {}  # a kind's first path is its headline
    for d in (_read(reports, "patching/details.json") or {}).get("paths") or []:
        if isinstance(d, dict):
            paths.setdefault(d.get("kind"), d.get("path"))
    for kind, d in (pm.items() if isinstance(pm, dict) else []):
        if isinstance(d, dict) and "path_fraction" in d:
            out.append(Finding(f"{kind}: the patched heads form a circuit ({paths.get(kind, 'the configured path')})",
                               f"path patching restores {_f(d.get('path_fraction'))} of the logit difference vs random "
                               f"paths {_f(d.get('random_path_fraction'))}",
                               verdict(d.get("path_fraction"), d.get("random_path_fraction")), "patching/metrics.json"))
    return out


def collect(reports: Path, train_side: int | None = None) -> list[Finding]:
    """Every finding whose inputs exist, in page order. ``train_side``: the largest training maze's
    side (for "one size up"); None leaves that hypothesis out."""
    reports = Path(reports)
    out: list[Finding] = []
    for part in (_solves, lambda r: _generalises(r, train_side), _probes, _heads, _faithfulness, _reach, _steering,
                 _plan_instruments):
        try:  # a malformed file leaves its hypotheses out; its own section says it could not read it
            out += part(reports)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError):
            continue
    return out


def train_side(reports: Path, train_grid_n: int | None = None) -> int | None:
    """The largest training maze's side: the largest of reports/data/details/train.json's sizes, or
    the training lattice's side when its mazes fill it."""
    det = _read(Path(reports), "data/details/train.json")
    sizes = det.get("sizes") if isinstance(det, dict) else None
    if isinstance(sizes, list) and sizes and all(_finite(k) for k in sizes):
        return int(max(sizes))
    return train_grid_n
