"""params.yaml validation: one clear message naming the key; stages write nothing on error."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mazesearch.params import (
    ActivationsSpec, CounterfactualsSpec, DlaSpec, FaithfulnessSpec, ReportSpec, PatchingSpec, SteeringSpec, ReachSpec, ClustersSpec, ParallelSpec, DynamicsSpec, EvaluateSpec, GeometrySpec, HeadsSpec, LogitLensSpec, ModelSpec, ParamsError, ProbesSpec, TokenizerSpec, TrainSpec,
    fill_defaults, load_params, missing_keys, parse_params, schema_defaults,
)
from mazesearch.params.__main__ import _main

ROOT = Path(__file__).resolve().parents[1]


def _base():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _tiny():
    return yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())


@pytest.mark.parametrize("profile", ["params.yaml", "profiles/tiny.yaml", "profiles/gpu.yaml"])
def test_shipped_profiles_are_valid(profile):
    load_params(ROOT / profile)


def _set(raw, dotted, value):
    raw = copy.deepcopy(raw)
    *parents, last = dotted.split(".")
    node = raw
    for k in parents:
        node = node[k]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()

BAD = [
    ("datasets.train.grid_n", 1, "datasets.train.grid_n"),
    ("datasets.train.n_mazes", 0, "datasets.train.n_mazes"),
    ("datasets.train.n_mazes", "many", "datasets.train.n_mazes"),
    ("datasets.train.generator", "prim", "datasets.train.generator"),
    ("datasets.train.colour", "red", "datasets.train.colour: unknown key"),
    ("datasets.percolation.p", 1.5, "datasets.percolation.p"),
    ("datasets.percolation.p", -0.1, "datasets.percolation.p"),
    ("datasets.train.p", 0.5, "p applies only to percolation"),
    ("datasets.percolation.p", _DELETE, "needs p"),
    ("tokenizer.coord", "triple", "tokenizer.coord"),
    ("tokenizer.max_grid_n", 3, "exceeds tokenizer.max_grid_n"),
    ("tokenzier", {"seed": 1}, "tokenzier: unknown key"),
    ("datasets.train.seed", 1.5, "datasets.train.seed"),
]


@pytest.mark.parametrize("key,value,expected", BAD)
def test_bad_params_name_the_key(key, value, expected):
    raw = _set(_base(), key, value)
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert expected in str(err.value)


def test_missing_train_dataset():
    raw = _base()
    del raw["datasets"]["train"]
    with pytest.raises(ParamsError, match="datasets.train is required"):
        parse_params(raw)


def test_not_a_mapping():
    with pytest.raises(ParamsError, match="mapping"):
        parse_params([1, 2])


@pytest.mark.parametrize("stage", ["generate train", "tokenize train", "vocab"])
def test_stage_with_bad_params_exits_and_writes_nothing(tmp_path, stage):
    raw = _set(_tiny(), "datasets.train.grid_n", 1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    args = stage.split()
    out_args = {
        "generate": ["--out-dir", str(tmp_path / "mazes"), "--report-dir", str(tmp_path / "rep")],
        "tokenize": ["--out-dir", str(tmp_path / "tokens")],
        "vocab": ["--out", str(tmp_path / "vocab.json")],
    }[args[0]]
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{args[0]}", *args[1:], "--params", str(tmp_path / "params.yaml"), *out_args],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "datasets.train.grid_n" in proc.stderr
    assert proc.stderr.count("\n") <= 4, proc.stderr  # one message, not a traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# --- every key explicit: the shipped params files write out every schema key -------------------

PROFILES = ["params.yaml", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "profiles").glob("*.yaml"))]


def _load(rel):
    return yaml.safe_load((ROOT / rel).read_text())


@pytest.mark.parametrize("profile", PROFILES)
def test_shipped_profiles_write_every_key(profile):
    # `dvc params diff` / `dvc exp show` see only keys in the file, and `dvc exp run -S` can set
    # only those: a key left to a schema default is invisible there. Fix: python -m mazesearch.params --fill
    assert missing_keys(_load(profile)) == []


PLANTED = [
    "probes.val_frac",
    "train.num_threads",
    "activations.hooks",
    "model.n_ctx",
    "datasets.percolation.max_depth",
    "evaluate.suites.test_sorted.n_mazes",
    "evaluate.suites.test_sorted.tokenizer.seed",
]


@pytest.mark.parametrize("key", PLANTED)
def test_checker_reports_exactly_the_planted_missing_key(key):
    raw = _set(_base(), key, _DELETE)
    parse_params(raw)  # still valid: the schema has a default for it
    assert missing_keys(raw) == [key]


def test_checker_walks_absent_sections_and_entries():
    raw = _base()
    del raw["probes"]
    raw["evaluate"]["suites"]["test"] = {"dataset": "test"}
    missing = missing_keys(raw)
    assert [k for k in missing if k.startswith("probes.")] == [f"probes.{f}" for f in ProbesSpec.model_fields]
    assert [k for k in missing if k.startswith("evaluate.")] == [
        "evaluate.suites.test.tokenizer.coord", "evaluate.suites.test.tokenizer.edges",
        "evaluate.suites.test.tokenizer.edge_order", "evaluate.suites.test.tokenizer.seed",
        "evaluate.suites.test.n_mazes",
    ]
    del raw["datasets"]
    assert "datasets" in missing_keys(raw)  # entries unknown: the key itself


def test_check_cli_exit_code_and_fill(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    path.write_text(text.replace("  val_frac: 0.2", "  # val_frac removed").replace("    max_cells_frac:\n", "", 1))
    assert _main(["--check", str(path)]) == 2
    out = capsys.readouterr().out
    assert "probes.val_frac missing (default 0.2)" in out
    assert "datasets.train.max_cells_frac missing (default null)" in out
    assert out.count("missing") == 2

    assert _main(["--fill", str(path)]) == 0
    assert missing_keys(yaml.safe_load(path.read_text())) == []
    assert load_params(path) == load_params(ROOT / "params.yaml")
    assert "# val_frac removed" in path.read_text()  # comments kept
    assert _main([str(path)]) == 0


def test_fill_reports_required_keys_it_cannot_fill(tmp_path):
    path = tmp_path / "params.yaml"
    raw = _set(_base(), "train.lr", _DELETE)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert fill_defaults(path) == ["train.lr"]


def test_schema_defaults_are_the_models_defaults():
    d = schema_defaults(_base())
    assert d["probes.val_frac"] == ProbesSpec().val_frac
    assert d["activations.positions"] == ActivationsSpec().positions
    assert d["evaluate.suites.test.tokenizer.coord"] is None


@pytest.mark.parametrize("profile", PROFILES)
def test_dvc_set_param_changes_only_its_own_lines(tmp_path, profile):
    """`dvc exp run -S` rewrites the file with ruamel (dvc.utils.hydra.apply_overrides): the
    layout (block style, empty = null) must come back unchanged but for the overridden lines."""
    hydra = pytest.importorskip("dvc.utils.hydra")
    path = tmp_path / "params.yaml"
    before = (ROOT / profile).read_text()
    path.write_text(before)
    hydra.apply_overrides(str(path), ["probes.C=0.5", "datasets.val.min_manhattan=1",
                                      "evaluate.suites.test.tokenizer.coord=pair", "activations.control_seed=7"])
    after = path.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert [b.split("#")[0].strip() for _, b in changed] == [
        "min_manhattan: 1", "tokenizer: {coord: pair, edges: null, edge_order: null, seed: null}",
        "control_seed: 7", "C: 0.5"]
    p = load_params(path)
    assert (p.probes.C, p.datasets["val"].min_manhattan, p.activations.control_seed) == (0.5, 1, 7)
    assert p.evaluate.suites["test"].tokenizer.coord == "pair"


# --- dvc.yaml `params:` lists: every key exists, and every key a stage reads is listed -----------

def _dotted(raw, key):
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _resolve(text, raw, key=None):
    def sub(m):
        expr = m.group(1)
        return key if expr == "key" else str(_dotted(raw, expr))

    return re.sub(r"\$\{([^}]+)\}", sub, text)


def _stage_params(raw):
    """stage name (foreach entries as name@key) -> dotted params keys, templates resolved."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = {}
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            entries = _dotted(raw, stage["foreach"].strip("${}"))
            body = stage["do"]
        else:
            entries, body = [None], stage
        for entry in entries:
            keys = list(raw) if "params.yaml" in body.get("deps", []) else []  # the whole file: every key
            for item in body.get("params", []):
                if isinstance(item, dict) and list(item.values()) == [None]:  # `- params.yaml:` = every key
                    keys += list(raw)
                    continue
                items = [item] if isinstance(item, str) else [k for v in item.values() for k in v]
                keys += [_resolve(k, raw, entry) for k in items]
            out[name if entry is None else f"{name}@{entry}"] = keys
    return out


def _fields(model, prefix):
    return [f"{prefix}.{f}" for f in model.model_fields]


def _reads(raw):
    """What each stage's code reads (stages/*.py and the library calls they make). A new schema
    field is read by its section's stage, so it must be listed there, by section or by name."""
    leaves = schema_defaults(raw)

    def under(prefix):
        return [k for k in leaves if k.startswith(prefix)]

    tok_text = [k for k in _fields(TokenizerSpec, "tokenizer") if k != "tokenizer.max_grid_n"]  # max_grid_n: via data/vocab.json
    reads = {"validate": list(leaves), "vocab": ["tokenizer.max_grid_n"], "train": _fields(ModelSpec, "model") + _fields(TrainSpec, "train"),
             "eval_summary": ["evaluate.suites", "evaluate.size_suites", "datasets"], "pictures": ["evaluate.suites", "evaluate.n_pictures"], "activations": _fields(ActivationsSpec, "activations"),
             "probes": _fields(ProbesSpec, "probes") + ["activations.dataset"],
             "dynamics": _fields(DynamicsSpec, "dynamics") + _fields(ProbesSpec, "probes")
             + ["activations.dataset", "activations.num_threads", "activations.batch_size", "activations.control_seed"],
             "heads": _fields(HeadsSpec, "heads"),
             "geometry": _fields(GeometrySpec, "geometry") + ["datasets.train.grid_n", "tokenizer.coord"],
             "logit_lens": _fields(LogitLensSpec, "logit_lens"), "dla": _fields(DlaSpec, "dla"),
             "reach": _fields(ReachSpec, "reach") + ["activations.dataset"]
             + [f"probes.{k}" for k in ("test_frac", "val_frac", "C", "max_iter", "seed")],
             "clusters": _fields(ClustersSpec, "clusters") + ["activations.dataset"],
             "parallel": _fields(ParallelSpec, "parallel") + ["activations.dataset"],
             "counterfactuals": _fields(CounterfactualsSpec, "counterfactuals") + ["tokenizer.coord"]
             + under(f"datasets.{raw['counterfactuals']['dataset']}."),
             "patching": _fields(PatchingSpec, "patching"),
             "steering": _fields(SteeringSpec, "steering") + ["counterfactuals.dataset", "probes.C", "probes.max_iter"],
             "faithfulness": _fields(FaithfulnessSpec, "faithfulness"),
             "report": _fields(ReportSpec, "report") + ["evaluate.suites"] + tok_text}
    for name in raw["datasets"]:
        reads[f"generate@{name}"] = under(f"datasets.{name}.") + ["datasets.train"]
        reads[f"tokenize@{name}"] = tok_text
    for suite in raw["evaluate"]["suites"]:
        reads[f"evaluate@{suite}"] = (tok_text + under(f"evaluate.suites.{suite}.")
                                      + [k for k in _fields(EvaluateSpec, "evaluate") if k not in ("evaluate.suites", "evaluate.n_pictures", "evaluate.size_suites")])
    return reads


def _covered(key, listed):
    return any(key == k or key.startswith(k + ".") for k in listed)


@pytest.mark.parametrize("profile", PROFILES)
def test_dvc_yaml_params_exist(profile):
    raw = _load(profile)
    for stage, keys in _stage_params(raw).items():
        for key in keys:
            try:
                _dotted(raw, key)
            except KeyError:
                pytest.fail(f"dvc.yaml stage {stage} lists params key {key!r}, not in {profile}")


def test_every_key_a_stage_reads_is_listed():
    raw = _base()
    listed = _stage_params(raw)
    reads = _reads(raw)
    assert set(reads) == set(listed)
    for stage, keys in reads.items():
        unlisted = [k for k in keys if not _covered(k, listed[stage])]
        assert not unlisted, f"dvc.yaml stage {stage} reads {unlisted} but does not list them under params:"


def test_every_params_key_reruns_some_stage():
    raw = _base()
    listed = [k for keys in _stage_params(raw).values() for k in keys]
    assert [k for k in schema_defaults(raw) if not _covered(k, listed)] == []
