"""Git's index after `dvc exp run` (README, "Git's index after `dvc exp run`").

A workspace `dvc exp run` checks HEAD out and writes the experiment's files back over it
(libgit2, through scmrepo), often within one second: the index can keep HEAD's blob id with the
stat of a changed file of the same size, and git then calls the file unchanged (`git status`,
`git add -A`, `git checkout HEAD -- <file>`). A failed run leaves such entries. These tests run
the README's own command lines, after a successful and after a failed `dvc exp run -S`, and
check them against the truth computed apart: every tracked file whose bytes differ from HEAD's
blob. The pipeline is the real one cut to `validate` and `generate` on the tiny profile (the
stages that `-S datasets.test.seed` and a refused `-S probes.C=-1` touch), so it runs in seconds.
"""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
pytestmark = pytest.mark.e2e


def _sh(cmd: str, repo: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", cmd], cwd=repo, env=subprocess_env(repo), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _readme_block(anchor: str) -> list[str]:
    """The commands of the README's first indented block at or after the line holding `anchor`,
    one per line, comments dropped."""
    lines = README.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if anchor in line)
    while not lines[i].startswith("    "):
        i += 1
    block = []
    while i < len(lines) and lines[i].startswith("    "):
        command = lines[i].split("  #")[0].strip()
        if command and not command.startswith("#"):
            block.append(command)
        i += 1
    return block


def _readme_line(anchor: str, start: str) -> str:
    """The command in that block that starts with `start`."""
    block = _readme_block(anchor)
    found = [c for c in block if c.startswith(start)]
    assert len(found) == 1, block
    return found[0]


EXPERIMENTS = "Start each experiment from the committed params:"
BASELINE = "retraining noise swamps the change you made:"
RECOVERY = "To recover a workspace after any failed run:"


def _differs_from_head(repo: Path) -> set[str]:
    """Tracked files whose bytes differ from HEAD's blob (or are gone), by hashing them."""
    tree = _sh("git ls-tree -r -z HEAD", repo).stdout
    changed = set()
    for entry in filter(None, tree.split("\0")):
        meta, path = entry.split("\t", 1)
        blob = meta.split()[2]
        file = repo / path
        if not file.is_file():
            changed.add(path)
            continue
        data = file.read_bytes()
        if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != blob:
            changed.add(path)
    return changed


def _git_status(repo: Path) -> set[str]:
    out = _sh("git status --porcelain --untracked-files=no -z", repo).stdout
    return {entry[3:] for entry in out.split("\0") if entry}


def _dvc_status_clean(repo: Path) -> str:
    out = _sh(f"{sys.executable} -m dvc status", repo).stdout
    assert "Data and pipelines are up to date" in out, out
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The tiny profile, `validate` and `generate` only, reproduced and committed (the project's
    .dvc/config: core.autostage as shipped)."""
    repo = tmp_path_factory.mktemp("expgit")
    for name in ("mazesearch", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    shutil.copy(ROOT / "profiles" / "tiny.yaml", repo / "params.yaml")
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = {k: v for k, v in pipeline["stages"].items() if k in ("validate", "generate")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    _sh("git init -q && git config user.email e2e@example.com && git config user.name e2e", repo)
    _sh(f"{sys.executable} -m dvc init -q", repo)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    _sh(f"{sys.executable} -m dvc repro -q && git add -A && git commit -qm 'first run'", repo)
    assert _differs_from_head(repo) == set() and _git_status(repo) == set()
    return repo


def _exp_run(repo: Path, override: str, check: bool = True) -> subprocess.CompletedProcess:
    """The README's "one at a time" line (HEAD's params, then `dvc exp run -S`) with `override`."""
    line = _readme_line(EXPERIMENTS, "git show HEAD:params.yaml > params.yaml && dvc exp run")
    assert "-S probes.C=0.1" in line, line
    return _sh(line.replace("probes.C=0.1", override), repo, check=check)


def _readme_status(repo: Path) -> set[str]:
    """Run the README's "what changed" line after a run; the tracked files `git status` then lists."""
    _sh(_readme_line(EXPERIMENTS, "git read-tree HEAD && git status"), repo)
    return _git_status(repo)


def test_after_a_successful_exp_run_git_sees_every_change_and_the_baseline_commits_them(repo):
    _exp_run(repo, "datasets.test.seed=7")
    changed = _differs_from_head(repo)
    assert {"params.yaml", "dvc.lock", "reports/data/details/test.json"} <= changed, changed
    assert _readme_status(repo) == changed
    _dvc_status_clean(repo)
    # "First commit your own machine's baseline": the commit holds every file as it is now
    _sh(_readme_line(BASELINE, "git switch -c my-baseline"), repo)
    state = _sh("git log --oneline -2 && git status --short", repo).stdout
    assert _differs_from_head(repo) == set(), state
    assert _git_status(repo) == set(), state
    _dvc_status_clean(repo)


def _failed_exp_run(repo: Path, seed: int) -> set[str]:
    """A successful run (so the workspace differs from HEAD, as after `make demo` on a new
    machine), then `-S probes.C=-1`, refused by `validate`. The files that differ from HEAD."""
    _exp_run(repo, f"datasets.test.seed={seed}")
    proc = _exp_run(repo, "probes.C=-1", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "error: params.yaml is invalid: probes.C" in text, text
    assert re.search(r"^  C: -1\b", (repo / "params.yaml").read_text(), re.M)
    changed = _differs_from_head(repo)
    assert {"params.yaml", "dvc.lock", "reports/data/details/test.json"} <= changed, changed
    return changed


def _recover(repo: Path) -> None:
    """The README's recovery block, run as written; then nothing differs from HEAD."""
    recovery = _readme_block(RECOVERY)
    assert recovery[-1] == "dvc status", recovery
    for command in recovery:
        _sh(command, repo)
    state = _sh("git status --short", repo).stdout
    left = _differs_from_head(repo)
    assert left == set(), f"still differ from HEAD: {sorted(left)}; git status:\n{state}"
    assert _git_status(repo) == set()
    _dvc_status_clean(repo)


def test_after_a_failed_exp_run_the_readme_recovery_restores_head(repo):
    _failed_exp_run(repo, seed=8)
    _recover(repo)


def test_after_a_failed_exp_run_git_status_lists_every_change(repo):
    changed = _failed_exp_run(repo, seed=9)
    assert _readme_status(repo) == changed
    _recover(repo)
