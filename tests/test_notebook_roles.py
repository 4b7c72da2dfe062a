"""mazesearch.notebook: token roles (a hand-made example, the data) and the attention / probe
pictures, on the tiny run of tests/notebook_fixtures.py (the files `dvc repro` would write)."""

from __future__ import annotations

import numpy as np
import pytest

from notebook_fixtures import OPTION_SETS, VOCAB, run, run_dir  # noqa: F401 (fixtures)
from mazesearch.data.maze import edge_endpoints, n_edges
from mazesearch.data.tokens import encode, from_text
from mazesearch.notebook import ROLES, token_roles


TEXT = ("<ADJLIST_START> (0,0) <--> (0,1) ; (1,0) <--> (1,1) ; (0,0) <--> (1,0) ; <ADJLIST_END> "
        "<ORIGIN_START> (0,1) <ORIGIN_END> <TARGET_START> (1,1) <TARGET_END> "
        "<PATH_START> (0,1) (0,0) (1,0) (1,1) <PATH_END>")
# docs/tokens.md's 2x2 maze, by hand: (role, cell, edge, lattice edge, path index) per token.
EXPECTED = [("adjlist_start", -1, -1, -1, -1),
            ("edge_from", 0, 0, 0, -1), ("connector", -1, 0, 0, -1),
            ("edge_to", 1, 0, 0, -1), ("edge_sep", -1, 0, 0, -1),
            ("edge_from", 2, 1, 1, -1), ("connector", -1, 1, 1, -1),
            ("edge_to", 3, 1, 1, -1), ("edge_sep", -1, 1, 1, -1),
            ("edge_from", 0, 2, 2, -1), ("connector", -1, 2, 2, -1),
            ("edge_to", 2, 2, 2, -1), ("edge_sep", -1, 2, 2, -1),
            ("adjlist_end", -1, -1, -1, -1), ("origin_start", -1, -1, -1, -1), ("origin", 1, -1, -1, -1),
            ("origin_end", -1, -1, -1, -1), ("target_start", -1, -1, -1, -1), ("target", 3, -1, -1, -1),
            ("target_end", -1, -1, -1, -1), ("path_start", -1, -1, -1, -1), ("path", 1, -1, -1, 0),
            ("path", 0, -1, -1, 1), ("path", 2, -1, -1, 2), ("path", 3, -1, -1, 3), ("path_end", -1, -1, -1, -1)]


def _table(roles):
    return list(roles[["role", "cell", "edge", "lattice_edge", "path_index"]].itertuples(index=False, name=None))


def test_roles_of_the_documented_example():
    roles = token_roles(from_text(TEXT, VOCAB), VOCAB, 2)
    assert _table(roles) == EXPECTED
    assert roles["token"].tolist() == TEXT.split() and roles["position"].tolist() == list(range(len(EXPECTED)))
    assert roles.loc[15, ["row", "col", "coord_part"]].tolist() == [0, 1, "cell"]
    # pair coordinates and the walls list: each coordinate is two tokens, both carry the cell
    walls = ("<WALLS_START> (0, ,1) <-X-> (1, ,1) ; <WALLS_END> <ORIGIN_START> (0, ,1) <ORIGIN_END> <TARGET_START> "
             "(1, ,1) <TARGET_END> <PATH_START> (0, ,1) (0, ,0) <PATH_END>")
    roles = token_roles(from_text(walls, VOCAB), VOCAB, 2)
    assert roles["role"].tolist()[:8] == ["walls_start", "edge_from", "edge_from", "connector", "edge_to", "edge_to",
                                          "edge_sep", "walls_end"]
    assert roles["coord_part"].tolist()[1:3] == ["row", "col"] and roles["cell"].tolist()[1:6] == [1, 1, -1, 3, 3]
    assert roles["lattice_edge"].tolist()[1:7] == [3] * 6  # (0,1)-(1,1): the second vertical edge
    assert roles["path_index"].tolist()[-5:] == [0, 0, 1, 1, -1]


def test_a_model_written_path_is_read_leniently_the_prompt_strictly():
    written = "(0,1) <ADJLIST_START> (3,3) <PATH_END> <PADDING> ;"  # a stray token, an off-grid cell
    ids = from_text(TEXT.replace("(0,1) (0,0) (1,0) (1,1) <PATH_END>", written), VOCAB)
    tail = token_roles(ids, VOCAB, 2).iloc[21:]
    assert tail["role"].tolist() == ["path", "path", "path", "path_end", "padding", "after_end"]
    assert tail["cell"].tolist() == [1, -1, -1, -1, -1, -1]  # (3,3) is off the 2x2 grid
    assert tail["path_index"].tolist() == [0, 1, 2, -1, -1, -1]
    with pytest.raises(ValueError, match=r"position 2: expected <-->, got ';'"):
        token_roles(from_text(TEXT.replace("(0,0) <--> (0,1)", "(0,0) ; (0,1)", 1), VOCAB), VOCAB, 2)
    with pytest.raises(ValueError, match="not lattice neighbours"):
        token_roles(from_text(TEXT.replace("(0,0) <--> (0,1)", "(0,0) <--> (1,1)", 1), VOCAB), VOCAB, 2)


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: f"{o.coord}-{o.edges}")
def test_roles_agree_with_the_maze_data(run, opts):
    mazes = run.mazes
    tokens = encode(mazes, VOCAB, opts)
    ends = edge_endpoints(mazes.grid_n)
    for i in range(len(mazes)):
        roles = token_roles(tokens.tokens(i), VOCAB, mazes.grid_n)
        assert set(roles["role"]) <= set(ROLES) and (roles["role"] != "").all()
        listed = mazes.open[i] == (0 if opts.edges == "walls" else 1)
        starts = roles[roles["role"] == "edge_from"].drop_duplicates("edge")  # one row per listed edge
        assert sorted(starts["lattice_edge"]) == np.flatnonzero(listed).tolist()  # each exactly once
        assert starts["edge"].tolist() == list(range(int(listed.sum())))
        for e, cells in roles[roles["role"].isin(["edge_from", "edge_to"])].groupby("lattice_edge")["cell"]:
            assert set(cells) == set(ends[e].tolist())  # the listed cells are that edge's ends
        assert set(roles.loc[roles["role"] == "origin", "cell"]) == {mazes.origin[i]}
        assert set(roles.loc[roles["role"] == "target", "cell"]) == {mazes.target[i]}
        path = roles[roles["role"] == "path"].drop_duplicates("path_index")
        assert path["cell"].tolist() == mazes.path(i).tolist()
        cut = int(tokens.prompt_len[i])  # the prompt's roles are the prefix of the sequence's
        assert token_roles(tokens.tokens(i)[:cut], VOCAB, mazes.grid_n).equals(roles.iloc[:cut])


# ---------------------------------------------------------------------------- pictures


def test_cell_attention_holds_exactly_the_attention_on_cell_tokens(run):
    i, layer = 2, 1
    query = run.position(i, "path")
    _, cache = run.run_with_cache(i, names_filter=f"blocks.{layer}.attn.hook_pattern")
    ids = run.tokens.tokens(i)
    coordinate = (VOCAB.coord_row[ids] >= 0) | (VOCAB.pair_row[ids] >= 0) | (VOCAB.pair_col[ids] >= 0)
    r, c = divmod(int(run.mazes.target[i]), run.grid_n)
    for head in range(run.model.cfg.n_heads):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, head, query].double().numpy()  # [key]
        mass = run.cell_attention(i, layer, head, query, cache)
        assert mass.shape == (run.grid_n**2,) and (mass >= 0).all()
        assert mass.sum() == pytest.approx(pattern[coordinate].sum(), rel=1e-12)
        assert mass[r * run.grid_n + c] == pytest.approx(pattern[ids == VOCAB.id(f"({r},{c})")].sum(), rel=1e-12)
        assert pattern[query + 1:].sum() == 0  # causal: the drawn mass never comes from the future
        drawn = run.draw_attention(i, layer, head, query, cache).axes[0].images[0].get_array()
        assert np.array_equal(np.asarray(drawn).ravel(), mass)  # the heatmap shows these numbers


def test_probe_maps_take_cells_or_edges(run, tmp_path):
    from mazesearch.notebook.draw import save_figure

    n = run.grid_n
    cells = np.linspace(0, 1, n * n)
    fig = run.draw_probe_map(0, cells, title="cells")
    assert np.array_equal(np.asarray(fig.axes[0].images[0].get_array()).ravel(), cells)
    edges = np.linspace(-1, 1, n_edges(n))
    edges[3] = np.nan
    fig = run.draw_probe_map(0, edges)
    shown = [c.get_array() for c in fig.axes[0].collections if c.get_array() is not None]
    assert len(shown) == 1 and np.array_equal(shown[0], np.delete(edges, 3))
    with pytest.raises(ValueError, match=f"per cell \\({n * n}\\) or per lattice edge \\({n_edges(n)}\\)"):
        run.draw_probe_map(0, np.zeros(5))
    save_figure(fig, tmp_path / "a.png")
    save_figure(run.draw_probe_map(0, edges), tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # deterministic PNG


def _arrows(fig):
    from matplotlib.colors import to_hex

    return [to_hex(a.get_edgecolor()) for a in fig.axes[0].patches if a.get_gid() == "predicted-step"]


def test_the_model_path_is_drawn_over_attention_and_probe_maps(run):
    """The evaluated model's path goes over both pictures as the gallery draws it: one arrow per
    pair of consecutive cells, blue along open edges, red through a wall; the same one overlay."""
    from mazesearch.viz.figure import BAD_COLOUR, PRED_COLOUR

    i = 0
    pred = run.prediction(i)["predicted_path"]
    cells = [c for c in pred if c >= 0]
    query = run.position(i, "path")
    assert len(_arrows(run.draw_attention(i, 0, 0, query))) == len(cells) - 1 > 0
    assert len(_arrows(run.draw_probe_map(i, np.zeros(run.grid_n**2)))) == len(cells) - 1
    assert len(_arrows(run.draw_probe_map(i, np.zeros(n_edges(run.grid_n))))) == len(cells) - 1
    assert _arrows(run.draw_attention(i, 0, 0, query, predicted=False)) == []
    # a path of our own: one open move, then one through a closed edge (read off the maze's bits)
    n, open_row = run.grid_n, run.mazes.open[i]
    ends = edge_endpoints(n)
    a, b = (int(x) for x in ends[np.flatnonzero(open_row)[0]])
    c, d = (int(x) for x in ends[np.flatnonzero(open_row == 0)[0]])
    colours = _arrows(run.draw_attention(i, 0, 0, query, predicted=[a, b, -1, c, d]))
    assert colours == [PRED_COLOUR, BAD_COLOUR]  # a-b open, b..c a non-cell gap (no arrow), c-d walled
    texts = [t for t in run.draw_probe_map(i, np.zeros(n * n), predicted=[a, b, -1, c, d]).axes[0].texts
             if t.get_gid() == "predicted-noncell"]
    assert [t.get_text() for t in texts] == ["?"]
