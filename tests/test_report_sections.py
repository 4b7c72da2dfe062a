"""The report's static sections (mazesearch.report.sections) on a small hand-made reports/ tree
that follows the real files' schemas: order and present flags, numbers in the right rows,
escaping, unreadable files, the asset map, determinism; and once on the repo's own reports/."""

import copy
import csv
import io
import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from mazesearch.report.sections import Section, build_sections
from mazesearch.report.sections_html import Ctx, svg_chart

IDS = ["findings", "data", "training", "evaluation", "size", "probes", "interp", "causal"]
REAL_REPORTS = Path(__file__).parents[1] / "reports"


def _png() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def _suite(dataset, generator, grid_n, n, model, model_lo, model_hi, base, base_lo, base_hi):
    return {"dataset": dataset, "generator": generator, "grid_n": grid_n, "n_mazes": n, "feedable": True,
            "reason": None, "leakage": 0, "model_exact_path": model, "baseline_exact_path": base,
            "model_valid_path": 0.7, "baseline_valid_path": 1.0, "model_first_fork_correct": 0.8,
            "baseline_first_fork_correct": 0.47, "model_exact_path_lo": model_lo, "model_exact_path_hi": model_hi,
            "baseline_exact_path_lo": base_lo, "baseline_exact_path_hi": base_hi}


def _probe_layer(trained, random_init, permuted):
    def scores(v):
        return {"accuracy": 0.9, "balanced_accuracy": v, "macro_f1": 0.5, "auroc": 0.8, "majority": 0.6,
                "n_outputs_defined": 24}
    test = {"trained": scores(trained), "random_init": scores(random_init), "permuted": scores(permuted)}
    return {"test": test, "val": copy.deepcopy(test),
            "selectivity": {"vs_random_init": round(trained - random_init, 6), "vs_permuted": round(trained - permuted, 6)}}


FILES = {
    "data/train.json": {"n_duplicates": 17},
    "data/details/train.json": {"frac_multiple_shortest_paths": 0.0, "mean_dead_ends": 4.86714, "mean_forks_on_path": 1.84499,
                                "mean_path_len": 3.92328, "n_dropped_no_endpoints": 0, "n_dropped_overlap": 0, "n_generated": 1000, "n_mazes": 1000,
                                "placement": "random", "sizes": [3, 4], "spanning_tree": False},
    "data/test.json": {"n_duplicates": 0},
    "data/details/test.json": {"frac_multiple_shortest_paths": 0.0, "mean_dead_ends": 4.917, "mean_forks_on_path": 1.8545,
                               "mean_path_len": 3.936, "n_dropped_no_endpoints": 0, "n_dropped_overlap": 7, "n_generated": 207, "n_mazes": 200,
                               "placement": "random", "sizes": [3, 4], "spanning_tree": False},
    "train/metrics.json": {"val_exact_path": 0.773, "val_loss": 0.808441, "val_path_loss": 0.10502, "step": 6000},
    "train/plots/metrics/train/loss.tsv": "step\tloss\n10\t4.29\n20\t3.39\n30\t2.5\n",
    "train/plots/metrics/val/exact_path.tsv": "step\texact_path\n10\t0.2\n30\t0.5\n",
    "train/plots/metrics/train/lr.tsv": "step\tlr\n10\t0.0003\n",
    "eval/summary.json": {"test": _suite("test", "wilson", 7, 200, 0.612, 0.581, 0.642, 0.304, 0.284232, 0.324519),
                          "size_5": _suite("size_5", "wilson", 7, 50, 0.076, 0.055869, 0.102596, 0.198, 0.165431, 0.235174)},
    "eval/summary.png": _png(),
    "eval/pictures/test.png": _png(),
    "eval/pictures/size_5.png": _png(),
    "eval/size.png": _png(),
    # as stage eval_summary writes it today: the series name's comma is not quoted
    "eval/size_plot.csv": ("size,suite,placement,series,exact,lo,hi\n"
                           "5,size_5,origin,model, origin,0.076,0.055869,0.102596\n"
                           "5,size_5,origin,baseline, origin,0.198,0.165431,0.235174\n"),
    "probes/metrics/walls.json": {"best_layer": "blocks.0.hook_resid_post", "test_score": 0.62567,
                                  "selectivity_vs_random_init": -0.154111, "selectivity_vs_permuted": 0.135281},
    "probes/details.json": {"walls": {
        "task": "multilabel", "main_score": "balanced_accuracy", "positions": ["path_start"], "n_outputs": 24,
        "n_fit_rows": 600, "n_val_rows": 150, "n_test_rows": 250, "permuted_unmoved_mazes": 0,
        "permuted_label_agreement": 0.61, "void_controls": {}, "best_layer": "blocks.0.hook_resid_post",
        "layers": {"embed": _probe_layer(0.5, 0.5, 0.5), "blocks.0.hook_resid_post": _probe_layer(0.62567, 0.779781, 0.490389)}}},
    "probes/walls_f1.png": _png(), "probes/on_solution_f1.png": _png(), "probes/future_path_f1.png": _png(),
    "heads/metrics.json": {"n_mazes": 256, "target": {"layer": 3, "head": 2, "score": 0.724179, "control_best": 0.01765},
                           "bottleneck": {"ratio": 1.191179, "control_ratio": 1.102511}},
    "heads/bottleneck.json": {"n_pairs": 411, "n_queries": 1170,
                              "trained": {"layer": 2, "head": 2, "ratio": 1.191179, "ci_low": 1.0285, "ci_high": 1.376326},
                              "random": {"layer": 1, "head": 1, "ratio": 1.102511, "ci_low": 1.025807,
                                         "ci_high": 1.182899}},
    "heads/bottleneck.png": _png(),
    "heads/scores.csv": ("hypothesis,layer,head,score,ci_low,ci_high,chance,ratio,control_score,control_ratio,n_queries\n"
                         "target,3,1,0.1,0.09,0.11,0.013784,7.25,0.01765,1.28,1000\n"
                         "target,3,2,0.724179,0.704,0.743,0.013784,52.54,0.013641,0.99,1000\n"),
    "heads/target.png": _png(),
    "geometry/metrics.json": {"spearman": {"trained": 0.387855, "control": -0.004299},
                              "qk": {"top_heads": 0.397959, "top_heads_control": 0.061224},
                              "ov_embed": {"top_heads": 0.18, "top_heads_control": 0.04},
                              "ov_unembed": {"top_heads": 0.25, "top_heads_control": 0.06},
                              "svd": {"trained": 0.820494, "random_init": 0.251835, "spectrum_matched": 0.546617}},
    "geometry/details.json": {"n_cells": 49, "embedding": {"euclidean": {"trained": {"p_value": 0.000999},
                                                                         "random": {"p_value": 0.521479}}},
                              "circuits": {"summary": {
        "qk": {"chance": 0.071429, "best": 0.693878, "best_control": 0.122449},
        "ov_embed": {"chance": 0.071429, "best": 0.24, "best_control": 0.18},
        "ov_unembed": {"chance": 0.071429, "best": 0.45, "best_control": 0.14}}}, "svd": {"top_k": 3}},
    "geometry/embedding_pca.png": _png(), "geometry/residual_pca.png": _png(), "geometry/svd.png": _png(),
    "logit_lens/metrics.json": {"acc_forks": 0.876426, "control_acc_forks": 0.0209125, "chance_forks": 0.468631,
                                "acc_corridors": 0.985375, "decision_layer_forks": 3.61217,
                                "decision_layer_corridors": 3.35466, "dead_end_share_final": 0.177555,
                                "control_dead_end_share_final": 0.643133},
    "logit_lens/lens.csv": ("layer_idx,layer,forks,corridors,control_forks,control_corridors,chance_forks\n"
                            "0,embed,0.0114068,0.0292505,0.0,0.0,0.468631\n"),
    "logit_lens/lens.png": _png(),
    "dla/metrics.json": {"total_logit_diff": 2.90441, "control_total_logit_diff": 0.0800413, "top1_component": "L3.mlp",
                         "top1_mean": 2.03746, "top1_frac_of_total": 0.701507},
    "dla/top_components.png": _png(),
    "reach/metrics.json": {"target": {"embed": 0, "blocks.0.hook_resid_post": 1}, "current": {"embed": 0,
                                                                                             "blocks.0.hook_resid_post": 2},
                           "mlp_largest": {"target": 1, "current": 0}},
    "reach/details.json": {"thresholds": {"min_balanced_accuracy": 0.8, "min_selectivity": 0.1}, "versions": {
        "target": {"mlp": {"layers": {"embed": {"reach": 0}, "blocks.0.hook_resid_post": {"reach": 1}}}},
        "current": {"mlp": {"layers": {"embed": {"reach": 0}, "blocks.0.hook_resid_post": {"reach": 0}}}}}},
    "reach/reach.png": _png(),
    "reach/reach_mlp.png": _png(),
    "clusters/metrics.json": {"dist_to_target": {"trained": 0.287624, "random_init": 0.022459, "permuted": 0.003506}},
    "clusters/details.json": {"method": {"k": 10}, "headline": "dist_to_target", "labels": {
        "dist_to_target": {"chance": 0.144508, "best_layer": "blocks.2.hook_resid_post"},
        "fork": {"chance": 0.5125, "best_layer": "blocks.3.hook_resid_post", "layers": {"blocks.3.hook_resid_post": {
            "trained": 0.182773, "random_init": 0.095908, "permuted": 0.000369}}}}},
    "clusters/maps.png": _png(),
    "parallel/metrics.json": {"alternatives": {"trained": 0.638022, "stronger_control": 0.527543, "ahead": 0.765834}},
    "parallel/details.json": {"method": {"k": 2}, "best_layer": "blocks.3.hook_resid_post", "versions": {
        "alternatives": {"shape": {"peak_layer": "blocks.3.hook_resid_post", "peak_gap": 0.110479,
                                   "drop_after_peak": 0.0, "explore_then_discard": False},
                         "layers": {"blocks.3.hook_resid_post": {"2": {"random_init": 0.527543, "permuted": 0.499954}}}},
        "discarded": {"shape": {"peak_layer": "blocks.1.hook_resid_post", "peak_gap": 0.089771,
                                "drop_after_peak": 0.029498, "explore_then_discard": True},
                      "layers": {"blocks.3.hook_resid_post": {"2": {"trained": 0.573795, "random_init": 0.513522,
                                                                    "permuted": 0.5, "stronger_control": 0.513522}}}}}},
    "parallel/parallel.png": _png(),
    "dynamics/metrics.json": {"jump_step_exact_path": 2250.0, "jump_step_walls": None, "lead_steps_walls": None,
                              "jump_step_target": 500.0, "lead_steps_target": 1750.0},
    "dynamics/curve.csv": "step,exact_path,walls,target\n0,0,0.691227,0.139039\n1000,0.246667,0.54499,0.71003\n",
    "dynamics/dynamics.png": _png(),
    "counterfactuals/metrics.json": {"target_move": 128, "wall_move": 64},
    "patching/metrics.json": {"wall_move": {"n_pairs": 105, "ld_clean": 3.6651, "ld_corrupt": -4.1019, "control_gap": 0.0067,
                                            "top_head_noise_damage": 0.6342, "top_head_denoise": 0.2941,
                                            "path_fraction": 0.4127, "random_path_fraction": 0.0312,
                                            "random_path_above": 0.0417}},
    "patching/details.json": {"kinds": {"wall_move": {"edit_carries_until": "L2 in", "decision_from": "L3 in",
                                                      "top_head": "L0H1"}},
                              "paths": [{"kind": "wall_move", "path": "L0H1 -> L2H1", "fraction": 0.4127,
                                         "by_input": {"q": 0.0113, "k": 0.0521, "v": 0.3666},
                                         "random": {"n": 24, "n_asked": 24, "mean": 0.0312, "sd": 0.0598,
                                                    "above": 0.0417, "paths": [], "fractions": []}}]},
    "patching/resid.png": _png(), "patching/heads.png": _png(), "patching/paths.png": _png(),
    "steering/metrics.json": {"edge_add": {"probe_success": 0.2109, "random_success": 0.1172, "sae_success": 0.1328},
                              "target_move": {"probe_success": 0.0, "ceiling": 0.7578, "mean_diff_success": 0.6641,
                                              "mean_diff_random_success": 0.0, "label_free_success": 0.6562}},
    "steering/details.json": {"summary": {"edge_add": {"n_pairs": 128, "best_strength": 0.5, "probe_broken": 0.4766,
                                                       "permuted_success": 0.0859, "unsteered_success": 0.0625,
                                                       "unsteered_broken": 0.3438},
                                          "target_move": {"n_pairs": 128, "best_strength": 0.1, "mean_diff_broken": 0.2266,
                                                          "mean_diff_permuted_success": 0.0078,
                                                          "mean_diff_of_ceiling": 0.8763}},
                              "kinds": {"edge_add": {"rates": {"probe": {"0.5": {
        "success": {"rate": 0.2109, "lo": 0.1492, "hi": 0.2895, "n": 128}}}}}},
        "retarget": {"target_move": {"mean_diff": {"site": "target", "layer": 2, "best_strength": 1.0}}}},
    "steering/success.png": _png(), "steering/retarget.png": _png(), "steering/breaks.png": _png(),
    "faithfulness/metrics.json": {"full_exact": 0.7305, "all_ablated_exact": 0.0, "level": 0.95, "k_ranked": 16,
                                  "k_random": 15, "k_ablation": 12, "n_heads": 16, "max_helped": 0},
    "faithfulness/curve.png": _png(),
}


def write_tree(root: Path, files=FILES) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif isinstance(content, str):
            p.write_text(content)
        else:
            p.write_text(json.dumps(content, indent=2))
    return root


@pytest.fixture
def reports(tmp_path):
    return write_tree(tmp_path / "reports")


def by_id(sections: list[Section]) -> dict[str, Section]:
    return {s.id: s for s in sections}


def row_of(html: str, first_cell: str) -> str:
    """The one table row whose first cell is ``first_cell``."""
    rows = re.findall(r"<tr[^>]*><td>" + re.escape(first_cell) + r"</td>.*?</tr>", html)
    assert len(rows) == 1, rows
    return rows[0]


def test_every_section_in_order_and_present(reports):
    sections, _ = build_sections(reports)
    assert [s.id for s in sections] == IDS
    assert all(s.present for s in sections)
    assert all(isinstance(s, Section) and s.title for s in sections)
    assert not any("could not read" in s.html or 'class="missing"' in s.html for s in sections)


def test_empty_reports_names_the_stages(tmp_path):
    (tmp_path / "reports").mkdir()
    sections, assets = build_sections(tmp_path / "reports")
    assert [s.id for s in sections] == IDS
    assert not any(s.present for s in sections) and assets == {}
    stages = {"findings": [], "data": ["generate"], "training": ["train"], "evaluation": ["eval_summary", "pictures"],
              "size": ["eval_summary"], "probes": ["probes"],
              "interp": ["heads", "geometry", "logit_lens", "dla", "reach", "clusters", "parallel", "dynamics"],
              "causal": ["counterfactuals", "patching", "steering", "faithfulness"]}
    for s in sections:
        assert "Not built yet" in s.html, s.id
        for stage in stages[s.id]:
            assert f"dvc repro {stage}</code>" in s.html, (s.id, stage)
    assert "reports/eval/summary.json" in by_id(sections)["evaluation"].html
    assert "reports/train/metrics.json" in by_id(sections)["training"].html
    # a reports dir that does not exist at all reads the same
    assert build_sections(tmp_path / "nowhere")[0] == sections


def test_partly_present_section_names_what_is_missing(reports):
    for p in (reports / "eval/pictures").iterdir():
        p.unlink()
    (reports / "eval/summary.png").unlink()
    (reports / "steering/metrics.json").unlink()
    s = by_id(build_sections(reports)[0])
    ev = s["evaluation"]
    assert ev.present and "0.612 [0.581, 0.642]" in ev.html
    assert "missing: reports/eval/pictures (written by <code>dvc repro pictures</code>)" in ev.html
    assert "missing: reports/eval/summary.png (written by <code>dvc repro eval_summary</code>)" in ev.html
    causal = s["causal"]
    assert causal.present and "missing: reports/steering/metrics.json" in causal.html
    assert "dvc repro steering" in causal.html and "16 of 16" in causal.html  # the others still there


def test_numbers_land_in_their_rows(reports):
    s = by_id(build_sections(reports)[0])
    test_row = row_of(s["evaluation"].html, "test")
    assert '<td class="num">0.612 [0.581, 0.642]</td><td class="num">0.304 [0.284, 0.325]</td>' in test_row
    assert '<td class="num">200</td>' in test_row and "+0.308" in test_row
    size_row = row_of(s["evaluation"].html, "size_5")
    assert "0.076 [0.056, 0.103]" in size_row and "0.612" not in size_row
    # the size table reads the unquoted "model, origin" series: model and baseline in place
    size = re.findall(r"<tr><td class=\"num\">5</td><td>size_5</td>.*?</tr>", s["size"].html)[0]
    assert "0.076 [0.056, 0.103]</td><td class=\"num\">0.198 [0.165, 0.235]</td><td class=\"num\">-0.122" in size
    data_row = row_of(s["data"].html, "test")
    assert "<td>wilson</td>" in data_row and '<td class="num">7</td>' in data_row  # from the eval summary
    assert '<td class="num">200</td><td class="num">7</td><td class="num">0</td><td class="num">3.94</td>' in data_row
    assert "3, 4 (random)" in data_row
    assert row_of(s["data"].html, "train").count("–") == 2  # no suite evaluates train: generator, grid unknown
    # the probe's best layer (chosen on val) is the highlighted row, with both controls beside it
    best = row_of(s["probes"].html, "blocks.0.hook_resid_post")
    assert best.startswith('<tr class="sel">')
    assert "0.626</td><td class=\"num\">0.780</td><td class=\"num\">0.490</td>" in best
    assert "-0.154" in best and "+0.135" in best
    heads = s["interp"].html.split('<h3 id="interp-geometry"')[0]
    geometry = s["interp"].html.split('<h3 id="interp-geometry"')[1]  # the best heads come from details.json
    assert "0.694</td><td class=\"num\">0.122</td>" in row_of(geometry, "QK: neighbour top-1, best head")
    assert "49 cells" in geometry
    assert "0.388 (0.000999)" in geometry and "(0.521)" in geometry  # the p-values come from details.json
    assert "0.398</td><td class=\"num\">0.061</td><td class=\"num\">0.071</td>" in row_of(  # chance: details.json
        geometry, "QK: neighbour top-1, top lattice heads")
    svd = row_of(geometry, "max R² by row or column of the top-3 singular directions, top lattice heads (mean of OV, QK)")  # trained, random-init, spectrum
    assert "0.820</td><td class=\"num\">0.252</td><td class=\"num\">0.547</td>" in svd
    assert "geometry/svd.png" in geometry.split('<h3 id="interp-logit_lens"')[0]
    assert "<td>L3H2</td>" in row_of(heads, "target")  # the top head by score, not the first in the file
    assert "0.724 [0.704, 0.743]" in row_of(heads, "target")
    # bottleneck attention: the trained best head's ratio beside the random-init one's, then the heads
    assert "1.19</td><td class=\"num\">1.10</td>" in row_of(heads, "bottleneck / matched attention, best head")
    assert "L2H2 [1.03, 1.38]" in row_of(heads, "best head (95% interval)") and "heads/bottleneck.png" in heads
    assert "<td>none</td>" not in s["interp"].html and '<td class="num">none</td>' in row_of(s["interp"].html, "walls")
    assert "0.211 [0.149, 0.289]" in row_of(s["causal"].html, "edge_add")
    # clustering: the headline beside both controls and chance at its best layer, then the other labels
    clu = s["interp"].html.split('<h3 id="interp-clusters"')[1].split("<h3")[0]
    assert ('<td>blocks.2.hook_resid_post</td><td class="num">0.145</td><td class="num">+0.288</td>'
            '<td class="num">+0.022</td><td class="num">+0.004</td>') in row_of(clu, "dist_to_target (headline)")
    assert "+0.183</td><td class=\"num\">+0.096</td><td class=\"num\">+0.000" in row_of(clu, "fork")
    assert "10-NN purity" in clu and "assets/clusters_maps.png" in clu
    # parallel paths: the headline beside both controls at the alternatives' best layer, then the shapes
    par = s["interp"].html.split('<h3 id="interp-parallel"')[1].split("<h3")[0]
    assert ('<td class="num">0.638</td><td class="num">0.528</td><td class="num">0.500</td><td class="num">0.528</td>'
            '<td>blocks.3.hook_resid_post</td><td class="num">+0.110</td><td class="num">+0.000</td>'
            '<td class="num">no</td>') in row_of(par, "alternatives (off the path, not yet passed) (headline)")
    assert '<td class="num">0.766</td><td class="num">–</td>' in row_of(par, "true path ahead")
    assert ('<td class="num">0.574</td><td class="num">0.514</td><td class="num">0.500</td><td class="num">0.514</td>'
            '<td>blocks.1.hook_resid_post</td><td class="num">+0.090</td><td class="num">+0.029</td>'
            '<td class="num">yes</td>') in row_of(par, "branches already passed")
    assert "within 2 moves" in par and "assets/parallel_parallel.png" in par
    (retarget,) = [r for r in re.findall(r"<tr.*?</tr>", s["causal"].html, re.S) if "target @ block 2 input" in r]
    assert all(v in retarget for v in ("0.664", "0.656", "0.758", "0.876", "0.008"))
    assert '<p class="metric">validation exact-path rate: 0.773</p>' in s["training"].html
    # reach: the linear probe's k per layer, then the MLP's per layer and its headline (largest over layers)
    rea = s["interp"].html.split('<h3 id="interp-reach"')[1].split("<h3")[0]
    assert ('<tr><td>linear</td><td>blocks.0.hook_resid_post</td><td class="num">1</td><td class="num">2</td></tr>'
            in rea)
    assert ('<tr><td>MLP</td><td>blocks.0.hook_resid_post</td><td class="num">1</td><td class="num">0</td></tr>'
            in rea)
    assert ('<tr><td>MLP</td><td>largest over layers</td><td class="num">1</td><td class="num">0</td></tr>'
            in rea)
    assert "gap over its own random-init and permuted-label fits" in rea and "reach_mlp.png" in rea
    # patching: the layer and head names from details.json; path patching beside its random paths
    act, path = [r for r in re.findall(r"<tr.*?</tr>", s["causal"].html, re.S) if r.startswith("<tr><td>wall_move</td>") and "L0H1" in r]
    assert "<td>L2 in</td><td>L3 in</td><td>L0H1 (0.634)</td>" in act
    assert ('<td>L0H1 -&gt; L2H1</td><td class="num">0.413</td><td class="num">0.011 / 0.052 / 0.367</td>'
            '<td class="num">0.031 ± 0.060 (n=24)</td><td class="num">0.042</td>') in path
    assert "assets/patching_paths.png" in s["causal"].html


def test_quoted_size_csv_reads_the_same(tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["size", "suite", "placement", "series", "exact", "lo", "hi"])
    w.writerow([5, "size_5", "origin", "model, origin", 0.076, 0.055869, 0.102596])
    w.writerow([5, "size_5", "origin", "baseline, origin", 0.198, 0.165431, 0.235174])
    quoted = write_tree(tmp_path / "q", {**FILES, "eval/size_plot.csv": buf.getvalue()})
    plain = write_tree(tmp_path / "p")
    assert by_id(build_sections(quoted)[0])["size"] == by_id(build_sections(plain)[0])["size"]


def test_text_from_json_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    summary = copy.deepcopy(FILES["eval/summary.json"])
    summary["test"]["generator"] = evil
    files = {**FILES, "eval/summary.json": summary,
             "patching/details.json": {**FILES["patching/details.json"], "kinds": {"wall_move": {"top_head": evil}}}}
    sections, _ = build_sections(write_tree(tmp_path / "reports", files))
    html = "\n".join(s.html for s in sections)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in row_of(by_id(sections)["evaluation"].html, "test")
    assert "&lt;script&gt;" in by_id(sections)["causal"].html


def test_unreadable_files_break_only_their_block(reports):
    (reports / "eval/summary.json").write_text("{not json")
    (reports / "probes/details.json").write_text("[1, 2]")  # valid JSON, wrong shape
    (reports / "data/test.json").write_text("")
    (reports / "heads/scores.csv").write_text("hypothesis,layer\ntarget,3\n")  # columns missing
    s = by_id(build_sections(reports)[0])
    assert [sec.id for sec in s.values()] == IDS and all(sec.present for sec in s.values())
    ev = s["evaluation"].html
    assert re.search(r"could not read reports/eval/summary\.json: Expecting property name", ev)
    assert "assets/eval_summary.png" in ev and "assets/eval_pictures_test.png" in ev  # the rest of the section
    assert "could not read reports/probes/details.json: the file is a list, expected an object" in s["probes"].html
    assert "+0.135" in s["probes"].html  # the headline table from metrics/ still there
    assert "could not read reports/data/test.json" in s["data"].html
    assert "could not read reports/heads/scores.csv: missing key &#x27;score&#x27;" in s["interp"].html
    assert "0.876" in s["interp"].html  # the logit lens after it
    assert "0.773" in s["training"].html and "0.211 [0.149, 0.289]" in s["causal"].html
    # the data table keeps its rows: test's counts unknown, its generator too (the summary is broken)
    assert row_of(s["data"].html, "train").count("3.92") == 1
    assert row_of(s["data"].html, "test").startswith('<tr><td>test</td><td>–</td><td class="num">–</td>')
    assert '<td class="num">3.94</td>' in row_of(s["data"].html, "test")  # its details still read


def test_asset_map_matches_the_html(reports):
    sections, assets = build_sections(reports)
    referenced = {m for s in sections for m in re.findall(r'src="assets/([^"]+)"', s.html)}
    assert referenced == set(assets)
    assert "eval_pictures_test.png" in assets and assets["eval_pictures_test.png"] == reports / "eval/pictures/test.png"
    for name, src in assets.items():
        assert "/" not in name and name.endswith(".png") and Path(src).is_file()
    assert len(set(map(str, assets.values()))) == len(assets)
    assert len(assets) == sum(1 for rel, c in FILES.items() if rel.endswith(".png"))


def test_asset_names_never_collide(tmp_path):
    ctx = Ctx(tmp_path)
    a, b = ctx.asset("a/b_c.png"), ctx.asset("a_b/c.png")
    assert a == "a_b_c.png" and b != a and b.endswith(".png")
    assert ctx.asset("a/b_c.png") == a  # same source, same name
    assert ctx.asset("x/we ird<.png") == "x_we_ird_.png"


def test_no_absolute_paths_and_deterministic(reports):
    first, second = build_sections(reports), build_sections(reports)
    assert first == second
    assert str(reports) not in "".join(s.html for s in first[0])
    assert "reports/eval/summary.json" in by_id(first[0])["evaluation"].html


def test_training_curves_are_drawn_as_svg(reports):
    html = by_id(build_sections(reports)[0])["training"].html
    assert html.count("<svg") == 2 and "<script" not in html
    polylines = re.findall(r'<polyline [^>]*points="([^"]+)"', html)
    assert [len(p.split()) for p in polylines] == [3, 2]  # train loss (3 rows), val exact_path (2 rows); lr not drawn
    assert ">train loss</text>" in html and ">val exact_path</text>" in html
    # the loss curve falls from the top-left corner of the plot to the bottom-right
    (x0, y0), (x1, y1) = [tuple(map(float, p.split(","))) for p in polylines[0].split()[::2]]
    assert x0 < x1 and y0 < y1


def test_svg_chart_handles_flat_and_empty_series():
    flat = svg_chart("t", [("a", [(1, 0.5), (2, 0.5)])], "x", "y")
    assert "<polyline" in flat and "nan" not in flat
    assert "no points" in svg_chart("t", [("a", [(1, float("nan"))])], "x", "y")


@pytest.mark.skipif(not (REAL_REPORTS / "eval/summary.json").is_file(), reason="no pipeline outputs in reports/")
def test_on_the_repos_own_reports():
    sections, assets = build_sections(REAL_REPORTS)
    assert [s.id for s in sections] == IDS
    assert all(s.present for s in sections), [s.id for s in sections if not s.present]
    for s in sections:
        assert "could not read" not in s.html, s.id
    assert all(Path(p).is_file() for p in assets.values())
    referenced = {m for s in sections for m in re.findall(r'src="assets/([^"]+)"', s.html)}
    assert referenced == set(assets)


def _paths(x, depth=3, prefix=()):
    """Key paths into a JSON document, down to ``depth`` levels."""
    if depth == 0 or not isinstance(x, dict):
        return
    for k, v in x.items():
        yield prefix + (k,)
        yield from _paths(v, depth - 1, prefix + (k,))


def test_malformed_json_never_crashes_the_report(tmp_path):
    """Every JSON file, whole and at each key down to three levels, replaced by a value of the wrong
    type: the sections still build, and a whole-file replacement is named in the page."""
    json_files = [rel for rel, c in FILES.items() if isinstance(c, dict)]
    root = write_tree(tmp_path / "reports")
    for rel in json_files:
        for bad in ([1], "x", None):
            (root / rel).write_text(json.dumps(bad))
            html = "\n".join(s.html for s in build_sections(root)[0])
            assert f"could not read reports/{rel}" in html, (rel, bad)
        for path in _paths(FILES[rel]):
            for bad in (None, "x", [1], {"k": 1}):
                doc = copy.deepcopy(FILES[rel])
                node = doc
                for k in path[:-1]:
                    node = node[k]
                node[path[-1]] = bad
                (root / rel).write_text(json.dumps(doc))
                sections, assets = build_sections(root)  # must not raise
                assert [s.id for s in sections] == IDS
        (root / rel).write_text(json.dumps(FILES[rel]))
    for rel in [r for r, c in FILES.items() if isinstance(c, str)]:
        (root / rel).write_text("a,b\tc\n1\n\"unclosed\n")
        build_sections(root)
        (root / rel).write_text(FILES[rel])
