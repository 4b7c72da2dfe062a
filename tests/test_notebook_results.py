"""mazesearch.notebook: the logit lens and a hand-made DLA against the hook-free model (ln_final's
weight skewed), a stage's results against dvc.yaml, and the quickstart, on the tiny run of
tests/notebook_fixtures.py (the files `dvc repro` would write)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import REL_TOL, one_torch_thread, rel_err
from notebook_fixtures import ROOT, VOCAB, run, run_dir, run_text  # noqa: F401 (fixtures)
from mazesearch.io import InputError
from mazesearch.notebook import load_run, stage_results


@pytest.fixture(scope="module")
def skewed_run(run_dir, tmp_path_factory):
    """The tiny run with ln_final's weight drawn in [0.2, 3] and a bias: a lens or DLA that forgot
    the weight (the bridge does not fold it into W_U) is far off here."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("skewed")
    shutil.copytree(run_dir, root, dirs_exist_ok=True)
    weights = load_file(root / "models" / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    weights["ln_final.weight"] = 0.2 + 2.8 * torch.rand(weights["ln_final.weight"].shape, generator=g)
    weights["ln_final.bias"] = torch.randn(weights["ln_final.bias"].shape, generator=g)
    save_file(weights, root / "models" / "model.safetensors")
    with one_torch_thread():
        yield load_run(root)


def test_lens_is_the_hook_free_model_decoding_every_layer(skewed_run):
    from mazesearch.interp.lens import lens_logits

    run, i = skewed_run, 1
    ids = run.ids(i)
    T, positions = ids.shape[1], torch.arange(ids.shape[1])
    got = run.lens(i)
    with torch.no_grad():  # the oracle: no TransformerLens, the training module's own ln_final and unembed
        streams = list(run.gpt.residual_stream(ids))  # embeddings, then after each block
        want = torch.stack([run.gpt.logits(r)[0] for r in streams])
        ln = run.gpt.ln_final
        forgot_w = torch.stack([run.gpt.unembed(torch.nn.functional.layer_norm(r, ln.normalized_shape, None, ln.bias,
                                                                               ln.eps))[0] for r in streams])
        stage = lens_logits(run.model, ids, torch.zeros(T, dtype=torch.long), positions)  # stage logit_lens'
        logits = run.model(ids)[0]
    assert got.shape == (run.gpt.cfg.n_layers + 1, T, len(VOCAB))
    assert rel_err(got, want) < REL_TOL and rel_err(got, stage) < REL_TOL
    assert rel_err(got[-1], logits) < REL_TOL  # the last layer is the model's own output
    assert rel_err(forgot_w, want) > 0.1  # the weight matters here: the check above tells them apart
    assert run.lens(i, own=True).shape[1] == run.ids(i, own=True).shape[1]


def test_a_hand_made_dla_multiplies_by_ln_final_w(skewed_run):
    """docs/notebook.md's trap, as written there: decompose_resid(apply_ln=True) is centred and
    divided by ln_final's scale only; times ln_final.w, @ W_U, the components plus the bias term
    sum to the logits. Without the weight they do not."""
    model = skewed_run.model
    logits, cache = skewed_run.run_with_cache(2)
    with torch.no_grad():
        stack = cache.decompose_resid(apply_ln=True)  # [components, batch, pos, d_model]
        dla = (stack * model.ln_final.w) @ model.W_U  # [components, batch, pos, d_vocab]
        bias = model.ln_final.b @ model.W_U + model.b_U
        assert rel_err(dla.sum(0) + bias, logits) < REL_TOL
        assert rel_err((stack @ model.W_U).sum(0) + bias, logits) > 0.1


def test_results_read_a_stages_files(run, run_dir, tmp_path):
    eval_dir = run_dir / "reports" / "eval"
    got = run.results("evaluate")  # the run's suite
    assert got.metrics == json.loads((eval_dir / "suites" / "test.json").read_text())
    assert got.details == json.loads((eval_dir / "details" / "test.json").read_text())
    assert got.files == ("reports/eval/suites/test.json", "reports/eval/details/test.json")
    assert run.results("evaluate@test_sorted").details["tokenizer"]["edge_order"] == "sorted"
    with pytest.raises(FileNotFoundError, match="reports/logit_lens/metrics.json: missing; build it with "
                                                "`dvc repro logit_lens`"):
        run.results("logit_lens")
    with pytest.raises(FileNotFoundError, match="reports/data/test.json: missing; build it with "
                                                "`dvc repro generate@test`"):
        run.results("generate")  # the run's dataset
    with pytest.raises(ValueError, match="stage 'activations' writes no metrics or details"):
        run.results("activations")
    with pytest.raises(ValueError, match=r"name it evaluate@<suite>"):
        stage_results(run_dir, "evaluate")
    probes = tmp_path / "reports" / "probes"  # one headline file per probe, then the details
    (probes / "metrics").mkdir(parents=True)
    for name, score in (("walls", 0.9), ("target", 0.5)):
        (probes / "metrics" / f"{name}.json").write_text(json.dumps({"test_score": score}))
    with pytest.raises(FileNotFoundError, match="reports/probes/details.json: missing; build it with "
                                                "`dvc repro probes`"):
        stage_results(tmp_path, "probes")
    (probes / "details.json").write_text('{"n": 3}')
    res = stage_results(tmp_path, "probes")
    assert res.metrics == {"target": {"test_score": 0.5}, "walls": {"test_score": 0.9}} and res.details == {"n": 3}
    (probes / "details.json").write_text('{"n": ')
    with pytest.raises(InputError, match=r"probes/details.json: stage details is not valid JSON"):
        stage_results(tmp_path, "probes")


def test_results_know_every_json_output_of_dvc_yaml():
    """results.FILES against dvc.yaml: every stage with a metric, or a details JSON, is listed with
    exactly the paths the stage declares."""
    from mazesearch.notebook.results import FILES

    def paths(entries) -> list[str]:
        return [(next(iter(e)) if isinstance(e, dict) else e).replace("${key}", "{key}") for e in entries or []]

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        spec = spec.get("do", spec)
        metrics, outs = paths(spec.get("metrics")), paths(spec.get("outs"))
        json_details = [p for p in outs if p.endswith(".json") and ("details" in p or p.endswith("summary.json"))]
        if not metrics and not json_details:
            assert stage not in FILES, stage
            continue
        want_metrics, want_details = FILES[stage]
        assert sorted(metrics) == sorted(p for p in metrics if want_metrics and fnmatch.fnmatch(p, want_metrics)), stage
        assert bool(metrics) == bool(want_metrics), stage
        assert json_details == ([want_details] if want_details else []), stage
    assert set(FILES) <= set(stages)


# ---------------------------------------------------------------------------- the quickstart


def test_quickstart_runs_on_a_run(run_dir, tmp_path):
    out = tmp_path / "pictures" / "quick.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(run_dir), str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"Run({str(run_dir)!r}: 12 mazes of dataset 'test'")
    assert lines[1] == run_text(run_dir) and lines[-1] == f"wrote {out}"
    missing = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "dvc repro" in missing.stderr
