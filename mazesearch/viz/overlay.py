"""The one maze overlay: walls, cells with no open edge greyed (uncarved cells of a maze placed in
a larger lattice, obstacles), the stored shortest path, the predicted path (numbered arrows;
moves through a wall red, jumps red dashed, entries that name no cell a purple "?"), origin,
target and outlined cells. The gallery (mazesearch.viz.render), the interpretability pictures
(mazesearch.viz.interp_pictures), the notebook (mazesearch.notebook.draw) draw with it; the
report's explorer draws the same marks in SVG from :func:`scheme`.

Two looks, one set of marks: on an empty maze (``on_map=False``: the gallery) line widths and
markers scale with the cell size; over values already drawn on the cells (``on_map=True``: heat
maps) the paths are thinner and translucent and the endpoints sit in the upper half of their
cell, so each cell's value stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.patheffects import withStroke

from mazesearch.data.maze import edge_endpoints
from mazesearch.viz.figure import (
    BAD_COLOUR, BLOCKED_COLOUR, MARK_COLOUR, NONCELL_COLOUR, PRED_COLOUR, TARGET_COLOUR, TRUE_COLOUR,
    WALL_COLOUR, blocked_cells, centres, maze_axes, shade_cells, wall_segments,
)

BLOCKED_ALPHA = 0.85  # over values on the cells, grey lets a strong value show through
# the explorer's heat ramp (ColorBrewer "Blues" at 5 stops): 0 stays white, so walls and paths read
HEAT_STOPS = ((255, 255, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107))
ORIGIN_MARK = {"marker": "o", "mfc": "white", "mec": "black"}  # a white disc
TARGET_MARK = {"marker": "X", "mfc": TARGET_COLOUR, "mec": "black"}  # an orange cross


def step_kind(n: int, open_edges: set[tuple[int, int]], a: int, b: int) -> str:
    """docs/metrics.md's kinds of a step between two cells: "move" (open edge), "wall" (a walled
    jump: neighbours, edge closed), "jump" (not neighbours) or "stay" (the same cell again)."""
    if a == b:
        return "stay"
    (ra, ca), (rb, cb) = divmod(a, n), divmod(b, n)
    if abs(ra - rb) + abs(ca - cb) != 1:
        return "jump"
    return "move" if (min(a, b), max(a, b)) in open_edges else "wall"


def open_edge_set(n: int, open_row: np.ndarray) -> set[tuple[int, int]]:
    """The open lattice edges as (lower cell, higher cell) pairs."""
    return {(int(a), int(b)) for a, b in edge_endpoints(n)[np.asarray(open_row) != 0]}


STEP_STYLE = {  # colour, line style
    "move": (PRED_COLOUR, "solid"),
    "wall": (BAD_COLOUR, "solid"),
    "jump": (BAD_COLOUR, (0, (3.0, 1.5))),
    "stay": (BAD_COLOUR, "solid"),
}


def scheme() -> dict:
    """The overlay's colours and marks as plain JSON, for drawings made elsewhere (the report's
    explorer draws in SVG): one scheme for every maze picture."""
    return {
        "wall": WALL_COLOUR, "blocked": BLOCKED_COLOUR, "blocked_alpha": BLOCKED_ALPHA,
        "true_path": TRUE_COLOUR, "predicted": PRED_COLOUR, "bad": BAD_COLOUR, "noncell": NONCELL_COLOUR,
        "mark": MARK_COLOUR,
        "origin": {"shape": "disc", "fill": ORIGIN_MARK["mfc"], "edge": ORIGIN_MARK["mec"]},
        "target": {"shape": "cross", "fill": TARGET_MARK["mfc"], "edge": TARGET_MARK["mec"]},
        # step kind -> [colour, dashes in line widths ([] = solid)]
        "steps": {k: [c, [] if d == "solid" else list(d[1])] for k, (c, d) in STEP_STYLE.items()},
        "heat": [list(c) for c in HEAT_STOPS],
    }


NUMBERED_CELL_PT = 26.0  # the smallest cell (points) whose steps get numbers


def numbered(cell_pt: float) -> bool:
    """Whether predicted steps get their numbers at this cell size (smaller ones are unreadable)."""
    return cell_pt >= NUMBERED_CELL_PT


def draw_maze(
    ax: Axes,
    n: int,
    open_row: np.ndarray,  # uint8 [E]
    origin: int | None = None,
    target: int | None = None,
    path: np.ndarray | None = None,  # int [k] cells, the stored shortest path
    predicted: Sequence[int] | None = None,  # int [m] cells, -1 (or off-grid) = invalid token
    *,
    cell_pt: float = 40.0,  # side of one cell in points: sets line widths and marker sizes
    on_map: bool = False,  # over values already drawn on the cells (heat maps)
    marks: Sequence[int] = (),  # cells outlined in red dashes (e.g. the query's cell)
    pad: float | None = None,  # margin around the lattice; default 0.06 n + 0.06
    grey_blocked: bool = True,  # cells with no open edge greyed
) -> int:
    """Draw one maze on ``ax``: cells with no open edge greyed, walls, true path, predicted path,
    endpoints, marked cells. Returns the number of predicted entries that name no cell (0
    without a prediction)."""
    maze_axes(ax, n, 0.06 * n + 0.06 if pad is None else pad)
    if on_map:  # over a heat map: fixed widths, translucent path, endpoints raised
        z, wall_w, path_w, path_alpha, dy = 3, 2.2, 1.5, 0.75, -0.28
        origin_style, target_style = dict(ms=7), dict(ms=8)
    else:
        z, wall_w, path_w, path_alpha, dy = 1, float(np.clip(0.09 * cell_pt, 0.6, 3.0)), \
            float(np.clip(0.13 * cell_pt, 0.8, 3.5)), None, 0.0
        marker = float(np.clip(0.45 * cell_pt, 5.0, 14.0))
        origin_style = dict(ms=marker, mew=max(1.0, wall_w * 0.6))
        target_style = dict(ms=marker, mew=max(0.8, wall_w * 0.5))

    if grey_blocked:
        shade_cells(ax, blocked_cells(n, open_row), n, facecolor=BLOCKED_COLOUR, edgecolor="none",
                    alpha=BLOCKED_ALPHA if on_map else None, zorder=z)
    ax.add_collection(LineCollection(wall_segments(n, open_row), colors=WALL_COLOUR,
                                     linewidths=wall_w, capstyle="projecting", zorder=z + 1))

    if path is not None and len(path):
        xy = centres(path, n)
        if on_map:
            ax.plot(xy[:, 0], xy[:, 1], color=TRUE_COLOUR, lw=path_w, alpha=path_alpha, zorder=z + 2)
        else:
            ax.plot(xy[:, 0], xy[:, 1], color=TRUE_COLOUR, lw=path_w, solid_capstyle="round",
                    solid_joinstyle="round", zorder=z + 2)

    n_noncell = 0 if predicted is None else draw_predicted(ax, n, open_row, predicted, path_w, cell_pt,
                                                           zorder=z + 2 + (not on_map), casing=on_map)
    ends = z + 3 + (not on_map)
    if origin is not None:
        x, y = centres([origin], n)[0]
        ax.plot([x], [y + dy], ls="none", zorder=ends, **ORIGIN_MARK, **origin_style)
    if target is not None:
        x, y = centres([target], n)[0]
        ax.plot([x], [y + dy], ls="none", zorder=ends, **TARGET_MARK, **target_style)
    for cell in marks:
        if cell is not None and 0 <= int(cell) < n * n:
            r, c = divmod(int(cell), n)
            ax.add_patch(Rectangle((c + 0.05, r + 0.05), 0.9, 0.9, fill=False, edgecolor=MARK_COLOUR,
                                   lw=2.0, ls="--", zorder=ends))
    return n_noncell


def draw_predicted(ax: Axes, n: int, open_row: np.ndarray, predicted: Sequence[int],
                   path_w: float, cell_pt: float = 40.0, *, zorder: float = 4, casing: bool = False) -> int:
    """The predicted path in order: one arrow per step between two cells, beside the cell
    centres on the right-hand side of its direction (so the true path on the centres and a move
    back along the same edge stay visible), numbered 1, 2, ... when the cells are big enough
    (:func:`numbered`); a dot marks the first cell. Walled jumps are red, jumps to a
    non-neighbour red dashed, staying on a cell a red loop. Entries that name no cell (-1, or
    off the grid) show as a purple "?" (with their count when several follow each other) where
    they occur in the sequence, on a dotted line joining the cells either side. Returns the
    number of such entries.

    Artists carry gids for tests: "predicted-step" (one arrow per pair of consecutive cells),
    "predicted-gap", "predicted-noncell" (one per run of non-cell entries), "predicted-start",
    "predicted-number". ``casing``: a white outline under arrows and numbers, for paths drawn over
    values on the cells.
    """
    entries = np.asarray(list(predicted), dtype=np.int64).reshape(-1)
    is_cell = (entries >= 0) & (entries < n * n)
    n_noncell = int((~is_cell).sum())
    pos = np.flatnonzero(is_cell)  # positions of the cells in the sequence
    text_pt = float(np.clip(0.22 * cell_pt, 5.0, 8.0))
    if len(pos) == 0:
        if n_noncell:
            noncell_mark(ax, (n / 2, n / 2), n_noncell, text_pt, zorder=zorder + 3)
        return n_noncell
    xy = centres(entries[pos], n)  # [k, 2] (x, y), y grows downwards
    open_edges = open_edge_set(n, open_row)
    lane = 0.15  # data units beside the centre line
    head = float(np.clip(0.3 * cell_pt, 4.0, 12.0))
    shrink = float(np.clip(0.12 * cell_pt, 1.0, 6.0))
    labels: dict[tuple, list[str]] = {}  # (x, y, colour) -> step numbers: a repeated step gets "3,9"
    start = xy[0] + 0.16
    for k in range(len(pos) - 1):
        A, B = xy[k], xy[k + 1]
        d = B - A
        length = float(np.hypot(*d))
        normal = np.array([-d[1], d[0]]) / length if length else np.zeros(2)
        A, B = A + lane * normal, B + lane * normal
        if k == 0 and length:
            start = A
        gap = int(pos[k + 1] - pos[k] - 1)
        if gap:  # non-cell entries between two cells
            ax.add_patch(FancyArrowPatch(A, B, arrowstyle="-", color=NONCELL_COLOUR, lw=path_w * 0.5,
                                         linestyle=(0, (1.0, 1.5)), shrinkA=shrink, shrinkB=shrink,
                                         zorder=zorder, gid="predicted-gap"))
            noncell_mark(ax, (A + B) / 2, gap, text_pt, zorder=zorder + 3)
            continue
        kind = step_kind(n, open_edges, int(entries[pos[k]]), int(entries[pos[k + 1]]))
        colour, style = STEP_STYLE[kind]
        if kind == "stay":  # a small loop above the cell, back onto it
            A, B = A + np.array([-0.2, -0.12]), A + np.array([0.2, -0.12])
        shape = dict(arrowstyle="-|>", shrinkA=shrink * (kind != "stay"), shrinkB=shrink * (kind != "stay"),
                     connectionstyle="arc3,rad=-1.6" if kind == "stay" else "arc3")
        lw = path_w * (1.1 if casing else 0.6)
        if casing:  # a white arrow under it, a little larger, so it reads on any colour
            ax.add_patch(FancyArrowPatch(A, B, mutation_scale=head + 2, color="white", lw=lw + 1.4,
                                         zorder=zorder, gid="predicted-casing", **shape))
        arrow = FancyArrowPatch(A, B, mutation_scale=head, color=colour, lw=lw, linestyle=style,
                                zorder=zorder, gid="predicted-step", **shape)
        ax.add_patch(arrow)
        at = (A + B) / 2 + (0.17 * normal if length else np.array([0.0, -0.3]))  # outside the lane
        at = np.clip(at, 0.18, n - 0.18)  # inside the frame
        labels.setdefault((round(at[0], 3), round(at[1], 3), colour), []).append(str(int(pos[k + 1])))
    for (x, y, colour), steps in labels.items() if numbered(cell_pt) else ():
        ax.text(x, y, ",".join(steps), ha="center", va="center", fontsize=max(text_pt * 0.8, 5.5), color=colour,
                zorder=zorder + 2, gid="predicted-number",
                path_effects=[withStroke(linewidth=2.0, foreground="white")] if casing else None)
    ax.plot([start[0]], [start[1]], "o", color=PRED_COLOUR, ms=float(np.clip(0.16 * cell_pt, 2.5, 6.0)),
            zorder=zorder + 2, gid="predicted-start")
    lead, trail = int(pos[0]), int(len(entries) - 1 - pos[-1])
    if lead:  # non-cell entries before the first cell: up-left of it
        noncell_mark(ax, np.clip(xy[0] - 0.32, 0.2, n - 0.2), lead, text_pt, zorder=zorder + 3)
    if trail:  # after the last cell: down-right of it
        noncell_mark(ax, np.clip(xy[-1] + 0.32, 0.2, n - 0.2), trail, text_pt, zorder=zorder + 3)
    return n_noncell


def noncell_mark(ax: Axes, xy, count: int, fontsize: float, *, zorder: float = 7) -> None:
    """A purple "?" box, "?×k" for k entries in a row that name no cell."""
    ax.text(float(xy[0]), float(xy[1]), "?" if count == 1 else f"?×{count}", ha="center",
            va="center", fontsize=fontsize, fontweight="bold", color="white", zorder=zorder,
            gid="predicted-noncell",
            bbox=dict(boxstyle="round,pad=0.15", facecolor=NONCELL_COLOUR, edgecolor="none"))


def legend_handles(predicted: bool, numbers: bool = True) -> list[Line2D]:
    """Legend entries for the overlay's marks (with ``predicted``: the predicted path's too; with
    ``numbers``: the arrows carry their step numbers, :func:`numbered`)."""
    handles = [Line2D([], [], color=TRUE_COLOUR, lw=2.5, label="shortest path")]
    if predicted:
        arrow = dict(marker=">", ms=5, lw=1.8)
        handles += [
            Line2D([], [], color=PRED_COLOUR, label="predicted move" + " (n = step)" * numbers, **arrow),
            Line2D([], [], color=BAD_COLOUR, label="through a wall", **arrow),
            Line2D([], [], color=BAD_COLOUR, ls=STEP_STYLE["jump"][1], label="jump", **arrow),
            Line2D([], [], marker="$?$", ls="none", color=NONCELL_COLOUR, label="non-cell entry"),
            Line2D([], [], marker="o", ms=4, ls="none", color=PRED_COLOUR, label="predicted start"),
        ]
    handles += [
        Line2D([], [], ls="none", label="origin", **{k: v for k, v in ORIGIN_MARK.items()}),
        Line2D([], [], ls="none", label="target", **{k: v for k, v in TARGET_MARK.items()}),
    ]
    return handles
