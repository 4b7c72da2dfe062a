"""Bad input gets one ``error:`` line naming what is wrong, exit 2, and nothing half-written.

Every stage runs here as its own process (``python -m stages.<name>``, as DVC runs it) on real
corrupt files: a Parquet file cut in half, random bytes as safetensors, a vocabulary of the wrong
size, a maze whose stored path crosses a wall, a broken meta.json, a missing file, ... Each case
checks: exit code 2, exactly one stderr line starting with ``error:`` that names the bad file
(and says what is wrong with it), no traceback, and none of the stage's outputs on disk.

The valid inputs are built once (tiny: 3x3 mazes, a 1-layer model) and copied per case; every
path is passed on the command line, so nothing is read from or written to the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- valid inputs


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    """One small, valid input of every kind that a stage reads."""
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.maze import write_mazes
    from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, max_sequence_length, write_tokens
    from mazesearch.interp.activations import extract_activations
    from mazesearch.model.gpt import GPT, ModelConfig, save_checkpoint

    root = tmp_path_factory.mktemp("valid")
    params = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    params["datasets"] = {"train": dict(generator="dfs", grid_n=3, n_mazes=40, seed=1),
                          "val": dict(generator="dfs", grid_n=3, n_mazes=8, seed=2),
                          "test": dict(generator="dfs", grid_n=3, n_mazes=12, seed=3)}
    params["evaluate"]["suites"] = {"test": {"dataset": "test"}}
    params["evaluate"]["size_suites"] = []
    params["activations"] = {"dataset": "test", "n_mazes": 8, "batch_size": 8}
    params["dynamics"] = {"n_mazes": 8, "probes": ["walls"]}
    for section in ("heads", "geometry", "logit_lens", "dla", "faithfulness"):
        params[section].update(dataset="test", n_mazes=8, batch_size=8)
    params["counterfactuals"].update(dataset="test", n_per_kind=4)
    params["patching"]["n_pairs"] = 4
    params["report"].update(dataset="val", n_mazes=8, suites=["test"], mazes_per_suite=2, batch_size=8)
    params["steering"].update(n_pairs=4, sae_steps=20, sae_features=16, sae_k=4)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    vocab = Vocab.build(params["tokenizer"]["max_grid_n"])
    vocab.to_json(root / "vocab.json")
    tokens = {}
    for name, spec in params["datasets"].items():
        batch, _ = build_mazes(**spec)
        write_mazes(batch, root / "mazes" / f"{name}.parquet")
        tokens[name] = encode(batch, vocab, TokenizerOptions())
        write_tokens(tokens[name], root / "tokens" / f"{name}.parquet")

    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32, d_vocab=len(vocab),
                      n_ctx=max_sequence_length(3, TokenizerOptions()))
    model = GPT(cfg, seed=0)
    save_checkpoint(model, root / "models")
    from mazesearch.data.maze import write_parquet_atomic
    from mazesearch.evaluation.suite import evaluate_suite

    test_mazes = build_mazes(**params["datasets"]["test"])[0]
    result = evaluate_suite(model, test_mazes, vocab, TokenizerOptions(), baseline_seed=0, batch_size=8)
    write_parquet_atomic(result.table, root / "predictions" / "test.parquet")
    for step in (1, 2):
        save_checkpoint(GPT(cfg, seed=step), root / "snapshots" / f"step_{step:07d}")
    for role, m in (("trained", model), ("random", GPT(cfg, seed=1))):
        extract_activations(m, tokens["test"], vocab, 3, root / "acts" / role, n_mazes=8, batch_size=8,
                            meta={"dataset": "test", "model": role})
    # what the causal stages read: counterfactual pairs, the probes' best layers, head patching
    from mazesearch.interp.counterfactuals import make_pairs, write_pairs

    write_pairs(make_pairs(test_mazes, tokens["test"], vocab, n_per_kind=4, seed=0), root / "pairs" / "pairs.parquet")
    (root / "probes.json").write_text(json.dumps({p: {"best_layer": "blocks.0.hook_resid_post"}
                                                  for p in ("walls", "target")}))
    (root / "heads.csv").write_text("kind,layer,head,denoise,noise\n" + "".join(
        f"target_move,0,{h},0.5,{0.2 * h}\n" for h in range(2)))
    return root


# ---------------------------------------------------------------------------- corruptions


def truncate(path: Path) -> None:
    """Keep the first half of a real file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def cross_a_wall(path: Path) -> None:
    """Rewrite one maze's stored path (pyarrow, path column only) to cut through a wall.

    In a spanning-tree maze two lattice neighbours that are not consecutive on the path are
    separated by a wall (an open edge would close a cycle): jump from one to the other.
    """
    table = pq.read_table(path)
    n = table["grid_n"][0].as_py()
    paths = table["path"].to_pylist()
    for row, p in enumerate(paths):
        for i in range(len(p)):
            for j in range(i + 2, len(p)):
                a, b = p[i], p[j]
                if abs(a - b) == n or (abs(a - b) == 1 and a // n == b // n):
                    paths[row] = p[: i + 1] + p[j:]
                    column = pa.array(paths, type=table.schema.field("path").type)
                    pq.write_table(table.set_column(table.column_names.index("path"), "path", column), path)
                    return
    raise AssertionError(f"{path}: no maze with a shortcut through a wall")


def edit_column(path: Path, name: str, edit: Callable[[pa.Table], pa.Array]) -> None:
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index(name), name, edit(table)), path)


def prompt_past_sequence(path: Path) -> None:
    """prompt_len = the whole sequence (there is no path left after the prompt)."""
    edit_column(path, "prompt_len", lambda t: pc.list_value_length(t["tokens"]).cast(pa.int32()))


def drop_a_tensor(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    del state["blocks.0.attn.k.weight"]
    save_file(state, path)


def write_vocab(max_grid_n: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        from mazesearch.data.tokens import Vocab

        Vocab.build(max_grid_n).to_json(path)
    return write


def edit_json(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return write


def write_text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def delete(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


# ---------------------------------------------------------------------------- cases


@dataclass
class Case:
    stage: str
    argv: str  # "{w}" is the case's work dir
    bad: str  # the file corrupted (relative to the work dir): the error line must name it
    corrupt: Callable[[Path], None]
    says: str  # what the error line must say is wrong
    outputs: list[str] = field(default_factory=list)  # must not exist afterwards (relative)
    also_names: str | None = None  # a second file the line must name


TRAIN_OUT = ["out/models/model.safetensors", "out/models/model_config.json", "out/reports/metrics.json"]
EVAL_OUT = ["out/predictions/test.parquet", "out/suites/test.json", "out/details/test.json"]
TRAIN = ("train --params {w}/params.yaml --train {w}/tokens/train.parquet --val {w}/tokens/val.parquet "
         "--vocab {w}/vocab.json --model-dir {w}/out/models --reports-dir {w}/out/reports "
         "--checkpoint-dir {w}/out/checkpoints")
EVALUATE = ("evaluate test --params {w}/params.yaml --mazes-dir {w}/mazes --vocab {w}/vocab.json "
            "--model-dir {w}/models --predictions-dir {w}/out/predictions --reports-dir {w}/out/suites "
            "--details-dir {w}/out/details")
PICTURES = ("pictures --params {w}/params.yaml --mazes-dir {w}/mazes --predictions-dir {w}/predictions "
            "--out-dir {w}/out/pictures")
ACTIVATIONS = ("activations --params {w}/params.yaml --model-dir {w}/models --tokens-dir {w}/tokens "
               "--mazes-dir {w}/mazes --vocab {w}/vocab.json --out-dir {w}/out/acts")
PROBES = "probes --params {w}/params.yaml --mazes-dir {w}/mazes --activations-dir {w}/acts --out-dir {w}/out/probes --quiet"
TOKENIZE = "tokenize test --params {w}/params.yaml --mazes-dir {w}/mazes --vocab {w}/vocab.json --out-dir {w}/out/tokens"

def edit_yaml(dotted: str, value) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        raw = yaml.safe_load(path.read_text())
        *parents, last = dotted.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[last] = value
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return write


def interp_stage(stage: str) -> str:
    return (f"{stage} --params {{w}}/params.yaml --model-dir {{w}}/models --tokens-dir {{w}}/tokens "
            f"--mazes-dir {{w}}/mazes --vocab {{w}}/vocab.json --out-dir {{w}}/out/{stage}")


CAUSAL = "--params {w}/params.yaml --model-dir {w}/models --vocab {w}/vocab.json"


def copy_from(name: str) -> Callable[[Path], None]:
    return lambda path: shutil.copy(path.parent / name, path)


CASES = {
    # params.yaml: the only input of validate, generate and vocab
    "validate-bad-value": Case(
        "validate", "validate --params {w}/params.yaml --out {w}/out/params_valid.txt",
        "params.yaml", edit_yaml("datasets.train.grid_n", 1), "datasets.train.grid_n", ["out/params_valid.txt"]),
    "generate-unknown-dataset": Case(
        "generate", "generate nope --params {w}/params.yaml --out-dir {w}/out/mazes --report-dir {w}/out/reports",
        "params.yaml", lambda p: None, "datasets.nope is not defined",
        ["out/mazes/nope.parquet", "out/reports/nope.json"]),
    "vocab-missing-params": Case(
        "vocab", "vocab --params {w}/params.yaml --out {w}/out/vocab.json",
        "params.yaml", delete, "not found", ["out/vocab.json"]),
    # maze Parquet
    "tokenize-truncated-mazes": Case(
        "tokenize", TOKENIZE, "mazes/test.parquet", truncate, "not readable Parquet", ["out/tokens/test.parquet"]),
    "tokenize-path-crosses-wall": Case(
        "tokenize", TOKENIZE, "mazes/test.parquet", cross_a_wall, "passes through a wall", ["out/tokens/test.parquet"]),
    "evaluate-missing-mazes": Case(
        "evaluate", EVALUATE, "mazes/test.parquet", delete, "maze file does not exist", EVAL_OUT),
    # vocab.json
    "tokenize-vocab-n_tokens": Case(
        "tokenize", TOKENIZE, "vocab.json", edit_json(lambda d: {**d, "n_tokens": d["n_tokens"] + 1}),
        "n_tokens=", ["out/tokens/test.parquet"]),
    "train-vocab-too-small-for-tokens": Case(
        "train", TRAIN, "tokens/train.parquet", lambda p: write_vocab(2)(p.parent.parent / "vocab.json"),
        "outside a vocabulary of", TRAIN_OUT),
    "evaluate-vocab-size-is-not-d_vocab": Case(
        "evaluate", EVALUATE, "models/model_config.json", lambda p: write_vocab(5)(p.parent.parent / "vocab.json"),
        "d_vocab=", EVAL_OUT, also_names="vocab.json"),
    # token Parquet
    "train-truncated-tokens": Case(
        "train", TRAIN, "tokens/val.parquet", truncate, "not readable Parquet", TRAIN_OUT),
    "activations-prompt-past-sequence": Case(
        "activations", ACTIVATIONS, "tokens/test.parquet", prompt_past_sequence, "prompt_len outside", ["out/acts"]),
    # the interpretability stages: heads, geometry, logit_lens, dla
    "heads-truncated-tokens": Case(
        "heads", interp_stage("heads"), "tokens/test.parquet", truncate, "not readable Parquet", ["out/heads"]),
    "geometry-random-bytes-safetensors": Case(
        "geometry", interp_stage("geometry"), "models/model.safetensors", random_bytes, "not a readable safetensors",
        ["out/geometry"]),
    "logit-lens-truncated-tokens": Case(
        "logit_lens", interp_stage("logit_lens"), "tokens/test.parquet", truncate, "not readable Parquet",
        ["out/logit_lens"]),
    "dla-mazes-of-another-dataset": Case(
        "dla", interp_stage("dla"), "mazes/test.parquet", copy_from("val.parquet"), "disagree", ["out/dla"]),
    # model checkpoint: safetensors + model_config.json
    "evaluate-random-bytes-safetensors": Case(
        "evaluate", EVALUATE, "models/model.safetensors", random_bytes, "not a readable safetensors", EVAL_OUT),
    "evaluate-safetensors-missing-tensor": Case(
        "evaluate", EVALUATE, "models/model.safetensors", drop_a_tensor, "missing ['blocks.0.attn.k.weight']", EVAL_OUT),
    "activations-config-not-json": Case(
        "activations", ACTIVATIONS, "models/model_config.json", write_text('{"d_model": 16,'), "not valid JSON",
        ["out/acts"]),
    # weight snapshots read by dynamics
    "dynamics-one-snapshot": Case(
        "dynamics", "dynamics --params {w}/params.yaml --snapshots-dir {w}/snapshots --mazes-dir {w}/mazes "
        "--tokens-dir {w}/tokens --vocab {w}/vocab.json --out-dir {w}/out/dynamics",
        "snapshots", lambda p: shutil.rmtree(p / "step_0000002"), "holds 1 snapshots", ["out/dynamics"]),
    "dynamics-truncated-snapshot": Case(
        "dynamics", "dynamics --params {w}/params.yaml --snapshots-dir {w}/snapshots --mazes-dir {w}/mazes "
        "--tokens-dir {w}/tokens --vocab {w}/vocab.json --out-dir {w}/out/dynamics",
        "snapshots/step_0000002/model.safetensors", truncate, "not a readable safetensors", ["out/dynamics"]),
    # predictions read by pictures
    "pictures-truncated-predictions": Case(
        "pictures", PICTURES, "predictions/test.parquet", truncate, "not readable Parquet", ["out/pictures"]),
    "pictures-predictions-of-other-mazes": Case(
        "pictures", PICTURES, "predictions/test.parquet",
        lambda p: shutil.copy(p.parents[1] / "mazes" / "val.parquet", p.parents[1] / "mazes" / "test.parquet"),
        "are not for these", ["out/pictures"]),
    # suite reports (details JSON) read by eval_summary
    "eval_summary-truncated-report": Case(
        "eval_summary", "eval_summary --params {w}/params.yaml --details-dir {w}/details --out-dir {w}/out/eval",
        "details/test.json", write_text('{"suite": "test", "dataset": "te'), "not valid JSON",
        ["out/eval/summary.json", "out/eval/summary.md", "out/eval/summary_plot.csv", "out/eval/summary.png"]),
    "eval_summary-not-a-report": Case(
        "eval_summary", "eval_summary --params {w}/params.yaml --details-dir {w}/details --out-dir {w}/out/eval",
        "details/test.json", write_text('{"suite": "test"}'), "is not a suite report",
        ["out/eval/summary.json", "out/eval/summary.md"]),
    # activation stores
    "probes-corrupt-meta": Case(
        "probes", PROBES, "acts/trained/meta.json", write_text('{"format": "mazesearch.activations/1", "n_rows":'),
        "not valid JSON", ["out/probes"]),
    "probes-store-of-other-mazes": Case(
        "probes", PROBES, "acts/trained/index.parquet",
        lambda p: shutil.copy(p.parents[2] / "mazes" / "train.parquet", p.parents[2] / "mazes" / "test.parquet"),
        "holds other mazes than", ["out/probes"], also_names="mazes/test.parquet"),
    "probes-truncated-layer-file": Case(
        "probes", PROBES, "acts/random/embed.npy", truncate, "truncated", ["out/probes"]),
    # the causal stages: counterfactuals, patching, steering, faithfulness
    "counterfactuals-truncated-tokens": Case(
        "counterfactuals", "counterfactuals --params {w}/params.yaml --mazes-dir {w}/mazes --tokens-dir {w}/tokens "
        "--vocab {w}/vocab.json --out {w}/out/pairs --reports {w}/out/cf", "tokens/test.parquet", truncate,
        "not readable Parquet", ["out/pairs", "out/cf"]),
    "patching-truncated-pairs": Case(
        "patching", "patching " + CAUSAL + " --pairs {w}/pairs/pairs.parquet --out-dir {w}/out/patching",
        "pairs/pairs.parquet", truncate, "pairs file is not readable Parquet", ["out/patching"]),
    "steering-no-best-layer": Case(
        "steering", "steering " + CAUSAL + " --pairs {w}/pairs/pairs.parquet --mazes-dir {w}/mazes "
        "--tokens-dir {w}/tokens --probes {w}/probes.json --out-dir {w}/out/steering",
        "probes.json", write_text('{"walls": {}}'), "no best layer for probe walls", ["out/steering"]),
    "faithfulness-heads-table-without-scores": Case(
        "faithfulness", interp_stage("faithfulness") + " --heads {w}/heads.csv", "heads.csv",
        write_text("kind,layer,head\n"), "no head scores in it", ["out/faithfulness"]),
    "report-truncated-predictions": Case(
        "report", interp_stage("report") + " --predictions-dir {w}/predictions --reports {w}/reports",
        "predictions/test.parquet", truncate, "cannot read the predictions", ["out/report"]),
    "reach-truncated-control-index": Case(
        "reach", "reach --params {w}/params.yaml --mazes-dir {w}/mazes --activations-dir {w}/acts --out-dir {w}/out/reach",
        "acts/random/index.parquet", truncate, "not readable Parquet", ["out/reach"]),
    "clusters-truncated-layer-file": Case(
        "clusters", "clusters --params {w}/params.yaml --mazes-dir {w}/mazes --activations-dir {w}/acts "
        "--out-dir {w}/out/clusters", "acts/trained/blocks.0.hook_resid_post.npy", truncate, "truncated",
        ["out/clusters"]),
    "parallel-truncated-layer-file": Case(
        "parallel", "parallel --params {w}/params.yaml --mazes-dir {w}/mazes --activations-dir {w}/acts "
        "--out-dir {w}/out/parallel", "acts/random/blocks.0.hook_resid_post.npy", truncate, "truncated",
        ["out/parallel"]),
}


def run_stage(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"stages.{argv[0]}", *argv[1:]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def check_one_error_line(proc: subprocess.CompletedProcess, named: Path, says: str, also: Path | None = None) -> str:
    """Exit 2, exactly one ``error:`` line on stderr naming ``named``, saying ``says``, no traceback."""
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, detail
    assert "Traceback" not in proc.stderr, detail
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, detail
    line = errors[0]
    assert str(named) in line, f"the error line does not name {named}: {line}"
    assert says in line, f"the error line does not say {says!r}: {line}"
    if also is not None:
        assert str(also) in line, f"the error line does not name {also}: {line}"
    return line


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_error_line_and_writes_nothing(name, valid, tmp_path):
    case = CASES[name]
    work = tmp_path / "w"
    shutil.copytree(valid, work)
    (work / "details").mkdir()
    (work / "details" / "test.json").write_text("{}")  # replaced by the eval_summary cases
    case.corrupt(work / case.bad)
    argv = case.argv.format(w=work).split()
    assert argv[0] == case.stage
    proc = run_stage(argv)
    line = check_one_error_line(proc, work / case.bad, case.says, work / case.also_names if case.also_names else None)
    print(line.replace(str(work) + "/", ""))  # shown with -s: the message each case gets
    for out in case.outputs:
        assert not (work / out).exists(), f"{out} was written"
    written = [p for p in (work / "out").rglob("*") if p.is_file()] if (work / "out").exists() else []
    assert not written, f"files written under out/: {written}"


def test_every_stage_and_every_input_kind_is_covered():
    stages = {p.stem for p in (ROOT / "stages").glob("*.py") if not p.stem.startswith("_")}  # _*: shared helpers, not stages
    assert {c.stage for c in CASES.values()} == stages
    kinds = {Path(c.bad).suffix for c in CASES.values()}
    assert {".yaml", ".parquet", ".json", ".safetensors", ".npy"} <= kinds
    bad_files = {Path(c.bad).name for c in CASES.values()} | {c.also_names for c in CASES.values()}
    assert {"vocab.json", "model_config.json", "meta.json", "model.safetensors"} <= bad_files
