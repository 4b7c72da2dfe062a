"""params.yaml validation: one clear message naming the key; stages write nothing on error."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mazesearch.params import ParamsError, load_params, parse_params

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
