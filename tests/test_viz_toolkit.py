"""mazesearch.viz is one public drawing toolkit: nothing outside a viz module reaches for its
private helpers, and the gallery, the interpretability pictures and the notebook draw their
mazes with the one overlay (mazesearch.viz.overlay.draw_maze)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def private_viz_uses(path: Path) -> list[str]:
    """``from mazesearch.viz.m import _x`` and ``m._x`` (m a viz module imported by name) in ``path``,
    unless ``path`` is module m itself."""
    tree = ast.parse(path.read_text(), str(path))
    me = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mazesearch.viz"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if node.module == "mazesearch.viz":  # `from mazesearch.viz import render`
                    aliases[a.asname or a.name] = full
                elif a.name.startswith("_") and node.module != me:
                    found.append(f"{path.relative_to(ROOT)}: from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mazesearch.viz.") and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != me):
            found.append(f"{path.relative_to(ROOT)}: {aliases[node.value.id]}.{node.attr}")
    return found


def python_files() -> list[Path]:
    return sorted(p for d in ("mazesearch", "stages", "tests", "examples") for p in (ROOT / d).rglob("*.py"))


def test_no_module_uses_a_private_viz_helper():
    assert [f for p in python_files() for f in private_viz_uses(p)] == []


def test_the_check_sees_both_forms(tmp_path, monkeypatch):
    bad = ROOT / "tests" / "_tmp_private_viz_probe.py"  # inside ROOT so relative paths work
    bad.write_text("from mazesearch.viz.figure import _x\nfrom mazesearch.viz import render\nrender._y(1)\n")
    try:
        assert private_viz_uses(bad) == ["tests/_tmp_private_viz_probe.py: from mazesearch.viz.figure import _x",
                                         "tests/_tmp_private_viz_probe.py: mazesearch.viz.render._y"]
    finally:
        bad.unlink()


def test_every_maze_picture_draws_with_the_one_overlay():
    """The modules that draw a maze call overlay.draw_maze and no longer build walls themselves."""
    for rel in ("mazesearch/viz/render.py", "mazesearch/viz/interp_pictures.py", "mazesearch/notebook/draw.py"):
        src = (ROOT / rel).read_text()
        calls = {n.func.id for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "draw_maze" in calls, rel
        assert "wall_segments" not in calls and "edge_endpoints" not in src, rel
