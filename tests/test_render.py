"""Pictures: valid deterministic PNGs, and pixel checks that walls, paths and colours land where
the maze geometry says they should."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_hex, to_rgb
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.image import imread
from matplotlib.patches import FancyArrowPatch

from helpers import texts_outside_figure
from mazesearch.viz import figure, heatmaps, overlay, render
from mazesearch.data.maze import MazeBatch, edge_endpoints, edge_index, n_edges

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- fixtures


def hand_batch() -> MazeBatch:
    """Two hand-made 3x3 mazes.

    Maze 0 (walls marked |, -)     Maze 1: every edge open except those of cell 8,
        0   1 | 2                  which is walled in (an obstacle).
        -       -
        3   4   5                  path 0 -> 1 -> 2 -> 5 in both.
            -   -
        6 | 7   8
    """
    n = 3
    open0 = np.ones(n_edges(n), np.uint8)
    for a, b in [(1, 2), (0, 3), (2, 5), (4, 7), (5, 8), (6, 7)]:
        open0[edge_index(n, a, b)] = 0
    open1 = np.ones(n_edges(n), np.uint8)
    for a, b in [(7, 8), (5, 8)]:
        open1[edge_index(n, a, b)] = 0
    # maze 0 path 0 -> 1 -> 4 -> 5 (1-2 and 2-5 are walls); maze 1 path 0 -> 1 -> 2 -> 5
    paths = [[0, 1, 4, 5], [0, 1, 2, 5]]
    offsets = np.array([0, 4, 8], np.int64)
    return MazeBatch(
        grid_n=n, generator="hand", open=np.stack([open0, open1]),
        origin=np.array([0, 0], np.int32), target=np.array([5, 5], np.int32),
        path_flat=np.array(sum(paths, []), np.int32), path_offsets=offsets,
        n_shortest_paths=np.array([1, 2], np.int64), forks_on_path=np.zeros(2, np.int16),
        n_dead_ends=np.zeros(2, np.int16),
    )


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def png_chunk_types(path) -> set[bytes]:
    data, pos, kinds = path.read_bytes(), 8, set()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.add(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def draw_to_array(draw, width_in=3.0, height_in=3.0):
    """Run ``draw(fig, ax)`` on a fresh figure; return (rgb float [H, W, 3], ax) after drawing."""
    fig = figure.new_figure(width_in, height_in)
    ax = fig.add_subplot()
    draw(fig, ax)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float64) / 255.0
    return rgb, ax


def pixel(rgb, ax, x, y, radius=0):
    """Colour at data point (x, y); with radius > 0 the darkest pixel of the (2r+1)^2 window."""
    px, py = ax.transData.transform((x, y))
    row, col = int(round(rgb.shape[0] - py)), int(round(px))
    window = rgb[row - radius : row + radius + 1, col - radius : col + radius + 1].reshape(-1, 3)
    return window[np.argmin(window.sum(axis=1))]


def wall_position(n: int, e: int) -> tuple[float, float]:
    """Data coordinates of the middle of the wall that closes lattice edge e."""
    a, b = edge_endpoints(n)[e]
    r, c = divmod(int(a), n)
    return (c + 1.0, r + 0.5) if b == a + 1 else (c + 0.5, r + 1.0)


def nearest_cmap_position(colour, cmap="viridis") -> int:
    table = colormaps[cmap](np.linspace(0, 1, 256))[:, :3]
    return int(np.argmin(((table - colour) ** 2).sum(axis=1)))


# ---------------------------------------------------------------------------- files


def test_render_mazes_writes_valid_deterministic_png(tmp_path):
    batch = hand_batch()
    kwargs = dict(predicted=[[0, 1, 4, 5], [0, -1, 2, 5]], failed=np.array([False, True]))
    a, b = tmp_path / "a.png", tmp_path / "sub" / "b.png"
    render.render_mazes(batch, [0, 1], a, **kwargs)
    render.render_mazes(batch, [0, 1], b, **kwargs)
    width, height = png_size(a)
    assert 300 <= width <= 2000 and 150 <= height <= 1500
    assert a.read_bytes() == b.read_bytes()
    # no software/time metadata chunks that would make equal inputs differ
    assert not png_chunk_types(a) & {b"tEXt", b"iTXt", b"zTXt", b"tIME"}
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []
    render.render_mazes(batch, [1, 0], b, **kwargs)
    assert a.read_bytes() != b.read_bytes()


def test_other_renders_write_valid_deterministic_pngs(tmp_path):
    cells = np.linspace(0, 1, 16)
    edges = np.linspace(1, 0, n_edges(4))
    jobs = [
        lambda p: heatmaps.render_cell_heatmap(cells, 4, p, title="cells"),
        lambda p: heatmaps.render_edge_heatmap(edges, 4, p, title="edges"),
        lambda p: render.render_bar_chart(["a", "b"], {"model": [0.9, 0.5], "base": [0.1, 0.2]},
                                          p, title="bars", ylabel="rate"),
        lambda p: render.render_bar_chart(["a", "b"], {"model": [0.9, 0.5]}, p,
                                          intervals={"model": ([0.8, 0.4], [0.95, 0.6])}),
        lambda p: heatmaps.render_maps({"trained": cells, "control": cells[::-1], "void": "none"}, 4, p,
                                       title="maps"),
    ]
    for k, job in enumerate(jobs):
        first, second = tmp_path / f"{k}a.png", tmp_path / f"{k}b.png"
        job(first)
        job(second)
        width, height = png_size(first)
        assert 200 <= width <= 2000 and 200 <= height <= 1500
        assert first.read_bytes() == second.read_bytes()


# ---------------------------------------------------------------------------- maze pixels


def test_two_by_two_wall_is_dark_and_open_edge_is_not():
    n = 2
    open_row = np.ones(n_edges(n), np.uint8)
    wall = edge_index(n, 0, 1)  # the top row's horizontal edge: a vertical wall at x = 1
    open_row[wall] = 0
    rgb, ax = draw_to_array(lambda fig, ax: overlay.draw_maze(ax, n, open_row, cell_pt=60))
    assert pixel(rgb, ax, 1.0, 0.5).max() < 0.3  # the wall
    assert pixel(rgb, ax, 1.0, 1.5, radius=2).min() > 0.9  # bottom row: open, stays white
    assert pixel(rgb, ax, 0.5, 1.0, radius=2).min() > 0.9  # open vertical edge 0-2
    assert pixel(rgb, ax, 0.0, 0.5).max() < 0.3  # the border


@pytest.mark.parametrize("seed", [0, 1])
def test_every_wall_position_is_dark_iff_edge_is_closed(seed):
    n = 4
    open_row = np.random.default_rng(seed).integers(0, 2, n_edges(n)).astype(np.uint8)
    rgb, ax = draw_to_array(lambda fig, ax: overlay.draw_maze(ax, n, open_row, cell_pt=40))
    for e in range(n_edges(n)):
        darkest = pixel(rgb, ax, *wall_position(n, e), radius=1).max()
        assert (darkest < 0.3) == (open_row[e] == 0), f"edge {e} open={open_row[e]}"


def test_walled_in_cell_is_shaded_and_path_is_green():
    batch = hand_batch()
    i = 1
    rgb, ax = draw_to_array(lambda fig, ax: overlay.draw_maze(
        ax, 3, batch.open[i], path=batch.path(i), cell_pt=50))
    assert np.allclose(pixel(rgb, ax, 2.5, 2.5), to_rgb(figure.BLOCKED_COLOUR), atol=0.02)
    assert np.allclose(pixel(rgb, ax, 0.5, 1.5), 1.0)  # open cell: white
    assert np.allclose(pixel(rgb, ax, 1.0, 0.5), to_rgb(figure.TRUE_COLOUR), atol=0.02)


def count_near(rgb, colour, atol=0.08) -> int:
    return int((np.abs(rgb - np.asarray(to_rgb(colour))) < atol).all(axis=-1).sum())


def test_predicted_moves_through_walls_are_red():
    batch = hand_batch()
    open0 = batch.open[0]

    def draw(predicted):
        return draw_to_array(lambda fig, ax: overlay.draw_maze(
            ax, 3, open0, 0, 5, batch.path(0), predicted, cell_pt=50))[0]

    assert count_near(draw([0, 1, 4, 5]), figure.BAD_COLOUR) == 0
    assert count_near(draw([0, 1, 4, 5]), figure.PRED_COLOUR) > 50
    assert count_near(draw([0, 1, -1, 4, 5]), figure.BAD_COLOUR) == 0  # -1 skipped, 1-4 open
    assert count_near(draw([0, 1, 2, 5]), figure.BAD_COLOUR) > 50  # 1-2 and 2-5 are walls
    # an entry that names no cell is an invalid step, not a jump: purple, not red
    assert count_near(draw([0, 1, -1, 5]), figure.BAD_COLOUR) == 0
    assert count_near(draw([0, 1, -1, 5]), figure.NONCELL_COLOUR) > 20
    assert count_near(draw([-1, 99]), figure.PRED_COLOUR) == 0  # nothing valid: nothing drawn


def test_failed_panels_get_a_red_frame(tmp_path):
    batch = hand_batch()
    ok, bad = tmp_path / "ok.png", tmp_path / "bad.png"
    render.render_mazes(batch, [0], ok, failed=np.array([False]))
    render.render_mazes(batch, [0], bad, failed=np.array([True]), titles=["maze zero"])
    assert count_near(imread(bad)[..., :3], figure.BAD_COLOUR) > \
        count_near(imread(ok)[..., :3], figure.BAD_COLOUR) + 500


def test_predicted_path_is_one_directed_arrow_per_pair_of_consecutive_cells():
    batch = hand_batch()  # maze 0: walls 1|2, 0-3, 2-5, 4-7, 5-8, 6|7
    seq = [0, 1, -1, -1, 4, 5, 2, 8, 8, -1]
    fig = figure.new_figure(3.0, 3.0)
    ax = fig.add_subplot()
    n_noncell = overlay.draw_maze(ax, 3, batch.open[0], 0, 5, batch.path(0), seq, cell_pt=50)
    fig.canvas.draw()
    pairs = [(a, b) for a, b in zip(seq, seq[1:]) if a >= 0 and b >= 0]
    assert pairs == [(0, 1), (4, 5), (5, 2), (2, 8), (8, 8)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_gid() == "predicted-step"]
    assert len(arrows) == len(pairs)
    centre = lambda c: np.array([c % 3 + 0.5, c // 3 + 0.5])  # noqa: E731
    for arrow, (a, b) in zip(arrows, pairs):  # drawn in sequence order, pointing from a to b
        if a != b:
            d = centre(b) - centre(a)
            verts = arrow.get_path().vertices  # data coordinates
            tip = verts[np.argmax(verts @ d)]
            assert np.linalg.norm(tip - centre(b)) < np.linalg.norm(tip - centre(a)), (a, b)
    # open move blue; 5-2 through a wall red; 2-8 a jump to a non-neighbour red dashed; 8-8 red
    assert [to_hex(a.get_edgecolor()) for a in arrows] == [figure.PRED_COLOUR] * 2 + [figure.BAD_COLOUR] * 3
    assert [a.get_linestyle() == "solid" for a in arrows] == [True, True, True, False, True]
    # the two -1s between 1 and 4 and the trailing -1: a mark where they occur, with the count
    marks = [t.get_text() for t in ax.texts if t.get_gid() == "predicted-noncell"]
    assert marks == ["?×2", "?"] and n_noncell == 3
    assert len([p for p in ax.patches if p.get_gid() == "predicted-gap"]) == 1
    # each arrow numbered with its step s (the move p[s-1] -> p[s]); a dot on the first cell
    numbers = [t.get_text() for t in ax.texts if t.get_gid() == "predicted-number"]
    assert numbers == ["1", "5", "6", "7", "8"]
    assert len([line for line in ax.lines if line.get_gid() == "predicted-start"]) == 1


def test_panel_titles_name_the_maze_and_count_noncell_entries(tmp_path, saved_figures):
    batch = hand_batch()
    render.render_mazes(batch, [1, 0], tmp_path / "m.png", predicted=[[0, -1, -1, 5], [-1, 1, 4, 5]],
                        failed=np.array([True, False]))
    (fig,) = saved_figures
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [f"maze_id {batch.maze_id[1]}\nFAIL · 2 non-cell entries",
                      f"maze_id {batch.maze_id[0]}\n1 non-cell entry"]
    assert texts_outside_figure(fig) == []
    render.render_mazes(batch, [0], tmp_path / "t.png", titles=["caller\n3 forks"], failed=np.array([True]))
    assert saved_figures[1].axes[0].get_title() == "caller\nFAIL · 3 forks"
    render.render_mazes(batch, [0], tmp_path / "p.png", predicted=[[0, -1, 5]], failed=np.array([True]))
    assert [texts_outside_figure(fig) for fig in saved_figures[1:]] == [[], []]  # one narrow panel too


@pytest.mark.parametrize("n, numbers", [(4, True), (7, True), (14, True), (20, False)])
def test_the_legend_promises_step_numbers_only_where_they_are_drawn(n, numbers, tmp_path, saved_figures):
    """Every predicted step gets its number up to 14 x 14 lattices (panels grow for them); beyond,
    the steps stay unnumbered and the legend does not say "n = step"."""
    from mazesearch.data.dataset import build_mazes

    batch, _ = build_mazes(generator="dfs", grid_n=n, n_mazes=2, seed=0, sizes=[min(n, 4)])
    paths = [batch.path(i).tolist() for i in range(2)]
    render.render_mazes(batch, [0, 1], tmp_path / "m.png", predicted=paths, failed=np.array([False, False]))
    (fig,) = saved_figures
    drawn = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "predicted-number"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert ("predicted move (n = step)" in labels) == numbers
    assert ("predicted move" in labels) == (not numbers)
    want = sorted(str(k) for p in paths for k in range(1, len(p)))  # step k: the k-th cell after the first
    assert sorted(drawn) == (want if numbers else [])


# ---------------------------------------------------------------------------- heatmaps


def test_cell_heatmap_colours_follow_values_and_nan_is_grey():
    n = 3
    values = np.array([0.5, 0.1, 0.9, 0.3, np.nan, 0.7, 0.0, 1.0, 0.2])
    rgb, ax = draw_to_array(lambda fig, ax: heatmaps.draw_cell_values(
        ax, values, n, vmin=0, vmax=1, cmap="viridis", annotate=True), 4.6, 4.0)
    positions = {}
    for cell in np.flatnonzero(~np.isnan(values)):
        r, c = divmod(int(cell), n)
        positions[cell] = nearest_cmap_position(pixel(rgb, ax, c + 0.15, r + 0.15))  # off the text
    ranked = sorted(positions, key=positions.get)
    assert ranked == sorted(positions, key=lambda cell: values[cell])
    assert positions[7] >= 250 and positions[6] <= 5  # 1.0 at the top end, 0.0 at the bottom
    nan_colour = pixel(rgb, ax, 1.5, 1.5, radius=3)
    assert np.ptp(nan_colour) < 0.05  # grey (or the grey hatch), not a colormap colour


def test_edge_heatmap_colours_follow_values():
    n = 3
    values = np.random.default_rng(7).permutation(n_edges(n)) / (n_edges(n) - 1)
    values = values.astype(np.float64)
    values[3] = np.nan
    rgb, ax = draw_to_array(lambda fig, ax: heatmaps.draw_edge_values(
        ax, values, n, vmin=0, vmax=1, cmap="viridis", cell_pt=60), 4.6, 4.0)
    rows, cols = np.divmod(edge_endpoints(n), n)  # [E, 2] each
    mid_x, mid_y = cols.mean(axis=1) + 0.5, rows.mean(axis=1) + 0.5
    positions = {e: nearest_cmap_position(pixel(rgb, ax, mid_x[e], mid_y[e]))
                 for e in range(n_edges(n)) if not np.isnan(values[e])}
    assert sorted(positions, key=positions.get) == sorted(positions, key=lambda e: values[e])


def test_all_nan_inputs_do_not_crash(tmp_path):
    heatmaps.render_cell_heatmap(np.full(25, np.nan), 5, tmp_path / "c.png")
    heatmaps.render_edge_heatmap(np.full(n_edges(5), np.nan), 5, tmp_path / "e.png")
    render.render_bar_chart(["x", "y"], {"m": [np.nan, np.nan]}, tmp_path / "b.png")
    heatmaps.render_cell_heatmap(np.full(100, np.nan), 10, tmp_path / "c10.png")  # no annotations
    assert all(png_size(tmp_path / f)[0] > 100 for f in ("c.png", "e.png", "b.png", "c10.png"))


# ---------------------------------------------------------------------------- bad input


def test_bad_shapes_raise_naming_the_expected_shape(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"shape \[9\]"):
        heatmaps.render_cell_heatmap(np.zeros(8), 3, out)
    with pytest.raises(ValueError, match=r"shape \[9\]"):
        heatmaps.render_cell_heatmap(np.zeros((3, 3)), 3, out)
    with pytest.raises(ValueError, match=r"shape \[12\]"):
        heatmaps.render_edge_heatmap(np.zeros(9), 3, out)
    with pytest.raises(ValueError, match=r"series 'b' must have shape \[2\]"):
        render.render_bar_chart(["p", "q"], {"a": [1, 2], "b": [1]}, out)
    with pytest.raises(ValueError, match="vmin < vmax"):
        heatmaps.render_cell_heatmap(np.zeros(9), 3, out, vmin=1, vmax=1)
    with pytest.raises(ValueError, match="grid_n"):
        heatmaps.render_cell_heatmap(np.zeros(1), 1, out)
    with pytest.raises(ValueError, match="NaN"):
        heatmaps.render_edge_heatmap(np.full(12, np.inf), 3, out)
    with pytest.raises(ValueError, match="categories is empty"):
        render.render_bar_chart([], {"a": []}, out)
    assert not out.exists()


def test_render_mazes_rejects_misaligned_arguments(tmp_path):
    batch, out = hand_batch(), tmp_path / "m.png"
    with pytest.raises(ValueError, match="out of range"):
        render.render_mazes(batch, [0, 2], out)
    with pytest.raises(ValueError, match="idx is empty"):
        render.render_mazes(batch, [], out)
    with pytest.raises(ValueError, match="predicted .* length 2"):
        render.render_mazes(batch, [0, 1], out, predicted=[[0, 1]])
    with pytest.raises(ValueError, match=r"failed must have shape \[2\]"):
        render.render_mazes(batch, [0, 1], out, failed=np.zeros(3, bool))
    with pytest.raises(ValueError, match="titles"):
        render.render_mazes(batch, [0], out, titles=["a", "b"])
    with pytest.raises(ValueError, match="ncols"):
        render.render_mazes(batch, [0], out, ncols=0)
    assert not out.exists()


# ---------------------------------------------------------------------------- intervals, titles, maps


def test_bar_chart_draws_each_interval_from_low_to_high(tmp_path, saved_figures):
    categories = ["a", "b", "c"]
    series = {"model": [0.5, 0.2, np.nan], "baseline": [0.3, 0.1, 0.4]}
    intervals = {"model": ([0.4, 0.1, np.nan], [0.6, 0.35, np.nan])}  # none for the baseline
    render.render_bar_chart(categories, series, tmp_path / "i.png", intervals=intervals)
    render.render_bar_chart(categories, series, tmp_path / "plain.png")  # the call without intervals
    with_intervals, plain = (fig.axes[0] for fig in saved_figures)
    (errors,) = [c for c in with_intervals.containers if isinstance(c, ErrorbarContainer)]
    (model_bars,) = [c for c in with_intervals.containers if isinstance(c, BarContainer) and c.get_label() == "model"]
    x = [bar.get_x() + bar.get_width() / 2 for bar in model_bars]
    segments = np.array(errors.lines[2][0].get_segments())  # one vertical bar per defined interval
    assert np.allclose(segments, [[[x[0], 0.4], [x[0], 0.6]], [[x[1], 0.1], [x[1], 0.35]]])
    assert with_intervals.get_ylim()[1] > 0.6
    assert [t.get_text() for t in with_intervals.get_legend().get_texts()] == ["model", "baseline", "95% interval"]
    assert not [c for c in plain.containers if isinstance(c, ErrorbarContainer)]
    with pytest.raises(ValueError, match="lows <= highs"):
        render.render_bar_chart(categories, series, tmp_path / "x.png", intervals={"model": ([1, 0, 0], [0, 1, 1])})
    with pytest.raises(ValueError, match="not drawn: 'other'"):
        render.render_bar_chart(categories, series, tmp_path / "x.png", intervals={"other": ([0] * 3, [1] * 3)})
    with pytest.raises(ValueError, match=r"shape \[2, 3\]"):
        render.render_bar_chart(categories, series, tmp_path / "x.png", intervals={"model": ([0, 0], [1, 1])})
    assert not (tmp_path / "x.png").exists()


LONG_TITLE = "future_path: test F1 of 'still ahead' at blocks.3.hook_resid_post"


@pytest.mark.parametrize("draw", [
    lambda p: heatmaps.render_cell_heatmap(np.linspace(0, 1, 16), 4, p, title=LONG_TITLE),
    lambda p: heatmaps.render_edge_heatmap(np.linspace(0, 1, n_edges(4)), 4, p, title=LONG_TITLE),
    lambda p: heatmaps.render_maps({"trained model": np.full(16, 0.5), "control": np.full(16, 0.2)}, 4, p,
                                   title=LONG_TITLE + " and a long tail of words that needs a second line"),
], ids=["cells", "edges", "maps"])
def test_heatmap_titles_lie_inside_the_figure(draw, tmp_path, saved_figures):
    draw(tmp_path / "h.png")
    (fig,) = saved_figures
    assert fig.get_suptitle().replace("\n", " ").startswith(LONG_TITLE)  # whole, maybe on two lines
    assert texts_outside_figure(fig) == []


@pytest.mark.parametrize("on", ["cells", "edges"])
def test_maps_side_by_side_share_one_colour_scale_and_bar(on, tmp_path, saved_figures):
    n = 3
    size = n * n if on == "cells" else n_edges(n)
    trained, control = np.linspace(0.2, 1.0, size), np.linspace(0.0, 0.4, size)
    trained[0] = control[0] = 0.3  # one entry equal in both maps
    heatmaps.render_maps({"trained": trained, "control": control, "void": "no map: void control"}, n,
                         tmp_path / "m.png", on=on, vmin=0, vmax=1, colorbar_label="test F1")
    (fig,) = saved_figures
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    maps = [ax for ax in fig.axes if ax is not bar]
    assert [ax.get_title() for ax in maps] == ["trained", "control", "void"]
    assert bar.get_ylabel() == "test F1" and np.allclose(bar.get_ylim(), (0, 1))
    scales = [m.norm for ax in maps[:2] for m in ax.get_images() + [c for c in ax.collections if c.get_array() is not None]]
    assert len(scales) == 2 and all((s.vmin, s.vmax) == (0, 1) for s in scales)
    assert [t.get_text() for t in maps[2].texts] == ["no map: void control"]
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.float64) / 255.0
    x, y = (0.15, 0.15) if on == "cells" else (1.0, 0.5)  # a corner of cell 0 / the middle of edge 0
    assert np.allclose(pixel(rgb, maps[0], x, y), pixel(rgb, maps[1], x, y), atol=0.02)  # same value, same colour
    assert texts_outside_figure(fig) == []
