"""Stage probes: its report files and their headline, from planted activation stores."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from helpers import texts_outside_figure
from mazesearch.data.maze import n_edges, write_mazes
from probe_fixtures import planted_stores, tree_mazes

ROOT = Path(__file__).resolve().parents[1]


def test_stage_writes_reports(tmp_path, monkeypatch, saved_figures):
    import stages.probes as stage

    batch = tree_mazes(4, 40, seed=7)
    trained, random_init = planted_stores(batch)
    import yaml

    dataset = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())["activations"]["dataset"]
    write_mazes(batch, tmp_path / "mazes" / f"{dataset}.parquet")
    stores = {"trained": trained, "random": random_init}
    monkeypatch.setattr(stage, "open_store", lambda path: stores[Path(path).name])
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "profiles" / "tiny.yaml").read_text())
    out = tmp_path / "reports"
    stage.main([
        "--params", str(params), "--mazes-dir", str(tmp_path / "mazes"),
        "--activations-dir", str(tmp_path / "acts"), "--out-dir", str(out), "--quiet",
    ])
    metrics = {p.stem: json.loads(p.read_text()) for p in sorted((out / "metrics").glob("*.json"))}
    details = json.loads((out / "details.json").read_text())
    dvc_metrics = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["probes"]["metrics"]
    assert {next(iter(m)) for m in dvc_metrics} == {f"reports/probes/metrics/{name}.json" for name in metrics}
    assert set(metrics) == set(details) and len(metrics) == 6
    for name, head in metrics.items():  # the headline: a few numbers per probe, taken from details
        assert list(head) == ["best_layer", "test_score", "selectivity_vs_random_init", "selectivity_vs_permuted"]
        at = details[name]["layers"][head["best_layer"]]
        assert head["test_score"] == at["test"]["trained"][details[name]["main_score"]]
        assert head["selectivity_vs_random_init"] == at["selectivity"]["vs_random_init"]
    assert metrics["walls"]["best_layer"] == "blocks.0.hook_resid_post"
    assert metrics["walls"]["selectivity_vs_permuted"] > 0.1
    assert metrics["dist_to_target"]["selectivity_vs_permuted"] is None  # void control
    assert list(details["walls"]["layers"]) == ["embed", "blocks.0.hook_resid_post"]  # model order
    table = pd.read_csv(out / "by_layer" / "future_path.csv")
    assert table.columns.tolist() == ["layer_idx", "layer", "trained", "random_init", "permuted", "trained_val"]
    assert table["layer"].tolist() == ["embed", "blocks.0.hook_resid_post"]
    assert table["trained"].iloc[1] > 0.9
    for png in ("future_path_f1.png", "on_solution_f1.png", "walls_f1.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per = json.loads((out / "per_output_f1.json").read_text())
    assert len(per["walls"]["values"]) == n_edges(4)
    # the controls' per-output F1 at the same layer; their mean is the macro F1 in details.json
    for name, maps in per.items():
        at = details[name]["layers"][maps["layer"]]["test"]
        for run, values in (("trained", maps["values"]), ("random_init", maps["random_init"]),
                            ("permuted", maps["permuted"])):
            assert len(values) == (n_edges(4) if name == "walls" else 16)
            mean = np.nanmean(np.array(values, dtype=np.float64))
            assert abs(mean - at[run]["macro_f1"]) < 2e-6, (name, run)
    # each map figure: the trained map beside both control maps, one colour scale, whole titles
    figures = {fig.get_suptitle().split(":")[0]: fig for fig in saved_figures}
    assert sorted(figures) == ["future_path", "on_solution", "walls"]
    for name, fig in figures.items():
        (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        maps = [ax for ax in fig.axes if ax is not bar]
        assert [ax.get_title().split("\n")[0] for ax in maps] == [
            "trained model", "control: random-init model", "control: permuted labels"]
        scales = {(m.norm.vmin, m.norm.vmax) for ax in maps for m in ax.get_images() + list(ax.collections)
                  if m.get_array() is not None}
        assert scales == {(0.0, 1.0)} and np.allclose(bar.get_ylim(), (0, 1))
        assert per[name]["layer"] in fig.get_suptitle().replace("\n", " ")
        assert texts_outside_figure(fig) == []


def test_stage_does_not_import_transformer_lens():
    code = (
        "import sys, stages.probes, mazesearch.interp.probes, mazesearch.interp.labels\n"
        "assert 'transformer_lens' not in sys.modules, 'transformer_lens imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
