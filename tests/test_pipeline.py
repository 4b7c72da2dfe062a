"""End-to-end: `dvc repro` on the tiny profile in a temporary git repo.

Checks that the pipeline runs, that a second `dvc repro` is a no-op, that outputs are
byte-identical when a stage reruns with unchanged params, and that changing a key reruns
exactly the stages that read it (and only stages downstream of those).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _run(args, cwd, **kw):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(cwd)
    env["DVC_NO_ANALYTICS"] = "1"
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def _repro(repo):
    out = _run([sys.executable, "-m", "dvc", "repro"], repo)
    return set(re.findall(r"Running stage '([^']+)'", out)), out


def _set_param(repo, dotted, value):
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    *parents, last = dotted.split(".")
    node = raw
    for k in parents:
        node = node[k]
    node[last] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _stage_names(repo):
    out = _run([sys.executable, "-m", "dvc", "stage", "list", "--names-only"], repo)
    return {line.strip() for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("e2e")
    for name in ("mazesearch", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    shutil.copy(ROOT / "profiles" / "tiny.yaml", repo / "params.yaml")
    _run(["git", "init", "-q"], repo)
    _run(["git", "config", "user.email", "e2e@example.com"], repo)
    _run(["git", "config", "user.name", "e2e"], repo)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], repo)
    return repo


def _commit(repo, msg):
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", msg, "--allow-empty"], repo)


def test_repro_runs_everything_then_is_a_noop(repo):
    ran, _ = _repro(repo)
    stages = _stage_names(repo)
    assert ran == stages, f"not run on first repro: {stages - ran}"
    for name in yaml.safe_load((repo / "params.yaml").read_text())["datasets"]:
        assert (repo / "data" / "mazes" / f"{name}.parquet").stat().st_size > 0
        assert (repo / "data" / "tokens" / f"{name}.parquet").stat().st_size > 0
    _commit(repo, "first run")
    ran, out = _repro(repo)
    assert ran == set(), out


def test_forced_rerun_gives_identical_bytes(repo):
    files = sorted((repo / "data").rglob("*.parquet")) + [repo / "data" / "vocab.json"]
    before = {f: f.read_bytes() for f in files}
    _run([sys.executable, "-m", "dvc", "repro", "-f", "-s", "generate@test", "tokenize@test", "vocab"], repo)
    for f in files:
        assert f.read_bytes() == before[f], f"{f} changed on an identical rerun"


def _downstream(repo, changed_stages):
    """Stages reachable from `changed_stages` in the DAG (inclusive), via `dvc dag --dot`."""
    dot = _run([sys.executable, "-m", "dvc", "dag", "--dot"], repo)
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', dot)
    reach, frontier = set(changed_stages), list(changed_stages)
    while frontier:
        s = frontier.pop()
        for a, b in edges:
            if a == s and b not in reach:
                reach.add(b)
                frontier.append(b)
    return reach


@pytest.mark.parametrize(
    "key,value,readers",
    [
        ("tokenizer.seed", 7, ("tokenize@",)),
        ("datasets.test.seed", 33, ("generate@test", "tokenize@test")),
        ("train.lr", 0.002, ("train",)),
        ("evaluate.baseline_seed", 1, ("evaluate@",)),
        ("activations.control_seed", 99, ("activations",)),
        ("probes.C", 0.5, ("probes",)),
    ],
)
def test_changing_a_key_reruns_only_downstream(repo, key, value, readers):
    """`readers` name (by prefix) the stages that read `key`: they must rerun; besides them only
    stages downstream of them may rerun (DVC skips those whose inputs come out byte-identical)."""
    must_run = {s for s in _stage_names(repo) if s.startswith(readers)}
    _set_param(repo, key, value)
    ran, out = _repro(repo)
    allowed = _downstream(repo, must_run)
    assert must_run <= ran, out
    assert ran <= allowed, f"ran outside the downstream set: {ran - allowed}"
    if key.startswith("tokenizer."):
        assert not any(s.startswith(("generate", "vocab")) for s in ran)
    if key.startswith("probes."):
        assert ran == {"probes"}
    _commit(repo, f"change {key}")
    ran, out = _repro(repo)
    assert ran == set(), out
    if key == "train.lr":  # a retrained model: `dvc metrics diff` shows per-suite changes
        diff = _run([sys.executable, "-m", "dvc", "metrics", "diff", "HEAD~1", "--all"], repo)
        assert "reports/eval/suites/test.json" in diff and "model_exact" in diff, diff
        assert "reports/train/metrics.json" in diff, diff
