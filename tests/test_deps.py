"""DVC sees every code file a stage runs, and the library's imports point one way.

The import closure of each stage module is computed from the code (every ``import mazesearch…``
anywhere in a file, function-level imports included, plus the packages' ``__init__.py``), and
each file in it must be covered by one of the stage's ``deps`` in dvc.yaml (the file itself or a
directory above it). Every listed library dep must also be needed: a directory that no file of
the closure lives in would rerun the stage for edits that cannot affect it.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Lower layers never import higher ones. viz draws mazes (it needs only data), so every later
# layer may draw; notebook (the handle on a finished run) reads every stage's files; bench may use
# everything; repro (the pipeline runner) sits on top.
LAYERS = ("io", "params", "data", "viz", "model", "evaluation", "interp", "report", "notebook", "bench", "repro")


def _module_file(module: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every mazesearch/stages module ``path`` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in ("mazesearch", "stages")}


def import_closure(path: Path, root: Path = ROOT) -> set[Path]:
    """Repo files executed when ``path`` runs: its imports, theirs, and their packages' __init__."""
    seen, todo = set(), [path]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for module in imported_modules(f):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, ...
                target = _module_file(".".join(parts[:i]), root)
                if target is not None and target not in seen:
                    todo.append(target)
    return seen


def stage_modules(dvc: dict) -> dict[str, tuple[Path, list[str]]]:
    """stage name -> (its stages/<name>.py, its deps) from dvc.yaml (foreach stages once each)."""
    out = {}
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        module = body["cmd"].split("-m ")[1].split()[0]
        out[name] = (_module_file(module), list(body.get("deps", [])))
    return out


def uncovered(dvc: dict, root: Path = ROOT) -> dict[str, list[str]]:
    """stage -> closure files no dep covers, and library deps that cover no closure file."""
    problems = {}
    for name, (module, deps) in stage_modules(dvc).items():
        files = sorted(str(f.relative_to(root)) for f in import_closure(module, root))
        covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
        missing = [f for f in files if not covered(f)]
        code_deps = [d for d in deps if d.startswith(("mazesearch", "stages"))]
        unused = [d for d in code_deps if not any(f == d or f.startswith(d.rstrip("/") + "/") for f in files)]
        if missing or unused:
            problems[name] = [f"missing {f}" for f in missing] + [f"unused {d}" for d in unused]
    return problems


@pytest.fixture(scope="module")
def dvc():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_stage_import_is_a_dep(dvc):
    assert uncovered(dvc) == {}


def test_the_check_catches_a_missing_dep(dvc):
    broken = copy.deepcopy(dvc)
    deps = broken["stages"]["pictures"]["deps"]
    deps.remove("mazesearch/viz")  # pictures are drawn with mazesearch/viz/render.py
    problems = uncovered(broken)
    assert list(problems) == ["pictures"]
    assert "missing mazesearch/viz/render.py" in problems["pictures"]


def test_the_check_catches_an_unused_dep(dvc):
    broken = copy.deepcopy(dvc)
    broken["stages"]["vocab"]["deps"].append("mazesearch/interp")
    assert uncovered(broken) == {"vocab": ["unused mazesearch/interp"]}


def test_closure_follows_function_level_imports():
    closure = {str(f.relative_to(ROOT)) for f in import_closure(ROOT / "stages" / "activations.py")}
    assert "mazesearch/interp/bridge.py" in closure  # imported inside a function (bridge backend)
    assert "mazesearch/data/__init__.py" in closure and "mazesearch/__init__.py" in closure


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT / "mazesearch")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_library_imports_point_one_way():
    """A module imports only from its own layer or the layers before it (LAYERS)."""
    wrong = []
    for path in sorted((ROOT / "mazesearch").rglob("*.py")):
        if path.name == "__init__.py" and path.parent == ROOT / "mazesearch":
            continue
        mine = LAYERS.index(_layer(path))
        for module in imported_modules(path):
            target = _module_file(module)
            if target is None or target.name == "__init__.py" and target.parent == ROOT / "mazesearch":
                continue
            if module.startswith("stages"):
                wrong.append(f"{path.relative_to(ROOT)} imports a stage: {module}")
            elif LAYERS.index(_layer(target)) > mine:
                wrong.append(f"{path.relative_to(ROOT)} ({_layer(path)}) imports {module} ({_layer(target)})")
    assert wrong == []


def test_tests_import_the_library_not_stage_internals():
    """Tests may run a stage through its ``main`` (the CLI entry), nothing else from stages/."""
    wrong = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages."):
                names = {a.name for a in node.names}
                if names - {"main"}:
                    wrong.append(f"{path.name}: from {node.module} import {sorted(names)}")
    assert wrong == []
