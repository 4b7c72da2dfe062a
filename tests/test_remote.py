"""Beyond one machine with DVC's own engines (README "Sharing runs"): a run pushed to a shared
remote and pulled into a fresh clone recomputes nothing; an experiment travels with `dvc exp
push` / `dvc exp pull`; two queued experiments run on two workers and both show in `dvc exp show`.

The repo is the tiny profile in a temporary git repo with a bare git remote and a local-directory
DVC remote; the target `evaluate@test` (generate, vocab, tokenize, train, evaluate) keeps it short.
"""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
TARGET = "evaluate@test"
pytestmark = pytest.mark.e2e


def _run(args, cwd, **kw) -> str:
    proc = subprocess.run(args, cwd=cwd, env=subprocess_env(cwd), capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def dvc(*args, cwd) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def git(*args, cwd) -> str:
    return _run(["git", *args], cwd)


def _ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """(repo, bare git remote, DVC remote directory) with the target reproduced and committed."""
    base = tmp_path_factory.mktemp("remote")
    repo, origin, storage = base / "repo", base / "origin.git", base / "dvc-storage"
    repo.mkdir()
    for name in ("mazesearch", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    shutil.copy(ROOT / "profiles" / "tiny.yaml", repo / "params.yaml")
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.email", "remote@example.com", cwd=repo)
    git("config", "user.name", "remote", cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("config", "core.analytics", "false", cwd=repo)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    # README "Sharing runs": a default DVC remote (a local directory here; S3, GCS, SSH ... by plugin)
    dvc("remote", "add", "-d", "shared", str(storage), cwd=repo)
    dvc("repro", TARGET, cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "tiny run", cwd=repo)
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=base)
    git("remote", "add", "origin", str(origin), cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    return repo, origin, storage


def _fresh_clone(origin: Path, where: Path) -> Path:
    git("clone", "-q", str(origin), str(where), cwd=origin.parent)
    git("config", "user.email", "clone@example.com", cwd=where)
    git("config", "user.name", "clone", cwd=where)
    return where


def test_push_then_pull_into_a_fresh_clone_recomputes_nothing(shared, tmp_path):
    repo, origin, storage = shared
    out = dvc("push", "--with-deps", TARGET, cwd=repo)
    assert "pushed" in out, out
    clone = _fresh_clone(origin, tmp_path / "clone")
    assert not (clone / "models" / "model.safetensors").exists()  # data are not in git
    dvc("pull", "--with-deps", TARGET, cwd=clone)
    assert (clone / "models" / "model.safetensors").read_bytes() == (repo / "models" / "model.safetensors").read_bytes()
    status = dvc("status", TARGET, cwd=clone)
    assert "up to date" in status, status
    assert _ran(dvc("repro", TARGET, cwd=clone)) == set()  # nothing recomputed


def test_an_experiment_travels_with_exp_push_and_exp_pull(shared, tmp_path):
    repo, origin, storage = shared
    dvc("exp", "run", "-n", "lr-high", "-S", "train.lr=0.004", TARGET, cwd=repo)
    dvc("exp", "push", "origin", "lr-high", cwd=repo)  # git refs to origin, data to the DVC remote
    clone = _fresh_clone(origin, tmp_path / "clone")
    dvc("exp", "pull", "origin", "lr-high", cwd=clone)
    shown = dvc("exp", "show", "--json", cwd=clone)
    assert "lr-high" in shown, shown
    # the experiment as a branch; `dvc exp pull` brought its outputs into the local cache
    dvc("exp", "branch", "lr-high", "lr-high-branch", cwd=clone)
    git("checkout", "-q", "lr-high-branch", cwd=clone)
    assert "lr: 0.004" in (clone / "params.yaml").read_text()
    dvc("checkout", "--with-deps", TARGET, cwd=clone)
    status = dvc("status", TARGET, cwd=clone)
    assert "up to date" in status, status  # the experiment's outputs came with it
    assert _ran(dvc("repro", TARGET, cwd=clone)) == set()


def _exp_rows(node):
    """Every experiment row (a dict with a ``name`` and ``data``) in `dvc exp show --json`."""
    if isinstance(node, dict):
        if node.get("name") and isinstance(node.get("data"), dict):
            yield node
        for value in node.values():
            yield from _exp_rows(value)
    elif isinstance(node, list):
        for value in node:
            yield from _exp_rows(value)


def _metric(rows, name: str):
    """Every value of a metric named ``name`` in `dvc exp show --json` rows (any file)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == name and isinstance(value, (int, float)):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(rows)
    return found


def test_two_queued_experiments_run_on_two_workers(shared):
    repo, _, _ = shared
    for seed in (11, 12):
        dvc("exp", "run", "--queue", "-n", f"seed-{seed}", "-S", f"train.seed={seed}", TARGET, cwd=repo)
    dvc("queue", "start", "-j", "2", cwd=repo)
    deadline = time.monotonic() + 900
    while True:
        status = dvc("queue", "status", cwd=repo)
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert status.count("Success") >= 2 and "Failed" not in status, status
    rows = {r["name"]: r for r in _exp_rows(json.loads(dvc("exp", "show", "--json", cwd=repo)))}
    assert {"seed-11", "seed-12"} <= set(rows), sorted(rows)
    losses = {name: _metric(rows[name]["data"].get("metrics", {}), "val_loss") for name in ("seed-11", "seed-12")}
    assert losses["seed-11"] and losses["seed-11"] != losses["seed-12"], losses
