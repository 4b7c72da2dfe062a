"""The explorer's account of a failure (mazesearch.report.explorer): which choices were right at
each step, the first wrong one, what each step did, and the colours it draws with.

Oracles: distances from the numba BFS of mazesearch.data.solve (the explorer has its own small
BFS), hand-made mazes whose right choices are read off a drawing, and the scheme defined once in
mazesearch.viz (figure.py's colours)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mazesearch.data.maze import edge_endpoints, edge_index, n_edges
from mazesearch.report.explorer import END, distances_to, right_choices, step_kinds

ROOT = Path(__file__).resolve().parents[1]


def placed_2x2() -> np.ndarray:
    """A 2x2 maze carved in the top-left of a 3x3 lattice: cells 0, 1, 3, 4; open 0-1, 1-4, 0-3
    (3-4 walled); cells 2, 5, 6, 7, 8 have no open edge.

        0   1   .
        |   |
        3 | 4   .
        .   .   .
    """
    open_row = np.zeros(n_edges(3), np.uint8)
    for a, b in [(0, 1), (1, 4), (0, 3)]:
        open_row[edge_index(3, a, b)] = 1
    return open_row


def test_a_wall_crossing_on_a_placed_maze_is_the_first_wrong_step():
    # origin 3, target 4: the way round is 3 -> 0 -> 1 -> 4; the model goes 3 -> 4 through the wall
    chosen = [3, 4, END]
    right, first = right_choices(3, placed_2x2(), 3, 4, chosen)
    assert right == [[3], [0], [END]]  # from 4 (the target) <PATH_END> is right again
    assert first == 1
    assert step_kinds(3, placed_2x2(), chosen) == ["start", "wall", "end"]


def test_every_shortest_path_is_right_and_a_detour_is_not():
    open_row = np.ones(n_edges(2), np.uint8)  # a 2x2 ring: 0 -> 3 by 1 or by 2
    right, first = right_choices(2, open_row, 0, 3, [0, 2, 3, END])
    assert right == [[0], [1, 2], [3], [END]] and first is None
    right, first = right_choices(2, open_row, 0, 3, [0, 1, 0, 1, 3, END])  # back to 0: a detour
    assert right[2] == [3] and first == 2


def test_tokens_naming_no_cell_jumps_and_stopping_early():
    open_row = placed_2x2()
    # a non-cell first (right: the origin), then the origin, a jump off the maze (nothing is right
    # from an uncarved cell), then <PATH_END>
    chosen = [-1, 3, 8, END]
    right, first = right_choices(3, open_row, 3, 4, chosen)
    assert right == [[3], [3], [0], []] and first == 0
    assert step_kinds(3, open_row, chosen) == ["noncell", "start", "jump", "end"]
    assert step_kinds(3, open_row, [3, 3, None]) == ["start", "stay", "none"]
    right, first = right_choices(3, open_row, 3, 4, [3, 0, END])  # <PATH_END> before the target
    assert right[2] == [1] and first == 2


@pytest.mark.parametrize("seed", range(5))
def test_right_choices_follow_the_bfs_of_the_solver(seed):
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.solve import bfs_distances

    mazes, _ = build_mazes(generator="percolation", p=0.3, grid_n=5, n_mazes=4, seed=seed, sizes=[3, 4])
    rng = np.random.default_rng(seed)
    for i in range(len(mazes)):
        n, open_row, origin, target = 5, mazes.open[i], int(mazes.origin[i]), int(mazes.target[i])
        dist = bfs_distances(n, open_row[None], np.array([target], np.int32))[0]
        assert np.array_equal(distances_to(n, open_row, target), dist)
        walk = [origin] + rng.integers(-1, n * n, 8).tolist()  # a random walk, non-cells included
        right, first = right_choices(n, open_row, origin, target, walk)
        ends = edge_endpoints(n)[open_row != 0]
        last = None
        for j, c in enumerate(walk):
            if last is None:
                want = [origin]
            elif last == target:
                want = [END]
            else:  # open neighbours one move closer (the solver's distances)
                nbrs = {int(b) for a, b in ends if a == last} | {int(a) for a, b in ends if b == last}
                want = sorted(b for b in nbrs if dist[last] > 0 and dist[b] == dist[last] - 1)
            assert right[j] == want, (i, j)
            if c >= 0:
                last = c
        assert first == next((j for j, c in enumerate(walk) if c not in right[j]), None)


def test_the_explorer_draws_with_the_pictures_scheme():
    from mazesearch.viz import figure
    from mazesearch.viz.overlay import scheme

    s = scheme()
    assert (s["wall"], s["blocked"], s["true_path"], s["predicted"], s["bad"], s["noncell"]) == (
        figure.WALL_COLOUR, figure.BLOCKED_COLOUR, figure.TRUE_COLOUR, figure.PRED_COLOUR, figure.BAD_COLOUR,
        figure.NONCELL_COLOUR)
    assert s["origin"] == {"shape": "disc", "fill": "white", "edge": "black"}
    assert s["target"] == {"shape": "cross", "fill": figure.TARGET_COLOUR, "edge": "black"}
    assert s["steps"]["wall"][0] == s["steps"]["jump"][0] == figure.BAD_COLOUR and s["steps"]["jump"][1]
    # the script names no colour of its own for what it draws: every colour comes from data.style
    script = (ROOT / "mazesearch/report/explorer.js").read_text()
    assert set(re.findall(r"#[0-9a-fA-F]{3,6}\b", script)) <= {"#fff"}  # white casing and labels only
    assert "rgb(" not in script.replace('"rgb(" + c.join(",") + ")"', "")  # the heat ramp: style.heat
