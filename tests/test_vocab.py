"""mazesearch.data.vocab: the vocabulary fixed by max_grid_n, its JSON file and its checks."""

import json

import numpy as np
import pytest

from mazesearch.data.vocab import SPECIAL_TOKENS, Vocab
from mazesearch.io import InputError


def test_vocab_layout_by_hand():
    v = Vocab.build(2)
    assert v.id_to_token == SPECIAL_TOKENS + ("(0,0)", "(0,", ",0)", "(0,1)", "(1,0)", "(1,1)", "(1,", ",1)")
    assert SPECIAL_TOKENS[:11] == ("<ADJLIST_START>", "<ADJLIST_END>", "<TARGET_START>", "<TARGET_END>",
                                   "<ORIGIN_START>", "<ORIGIN_END>", "<PATH_START>", "<PATH_END>",
                                   "<-->", ";", "<PADDING>")
    assert v.pad_id == 10 and v.token_to_id["(1,0)"] == 18 and v.id("(0,") == 15
    assert v.unary_id.tolist() == [[14, 17], [18, 19]]
    assert v.pair_row_id.tolist() == [15, 20] and v.pair_col_id.tolist() == [16, 21]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.id("(2,2)")


@pytest.mark.parametrize("n", [1, 3, 8, 17])
def test_vocab_lookups_and_prefix(n):
    v = Vocab.build(n)
    assert len(v) == len(SPECIAL_TOKENS) + n * n + 2 * n
    assert len(set(v.id_to_token)) == len(v)
    assert all(v.token_to_id[t] == i for i, t in enumerate(v.id_to_token))
    for i, tok in enumerate(v.id_to_token):
        r, c = v.coord_row[i], v.coord_col[i]
        assert (r >= 0) == (c >= 0)
        assert (tok == f"({r},{c})") if r >= 0 else not (tok.startswith("(") and tok.endswith(")"))
        assert (tok == f"({v.pair_row[i]},") if v.pair_row[i] >= 0 else not tok.endswith(",")
        assert (tok == f",{v.pair_col[i]})") if v.pair_col[i] >= 0 else not tok.startswith(",")
    assert all(v.id_to_token[v.unary_id[r, c]] == f"({r},{c})" for r in range(n) for c in range(n))
    # a smaller vocabulary is a prefix of a larger one: ids never move as max_grid_n grows
    assert Vocab.build(n + 1).id_to_token[: len(v)] == v.id_to_token
    assert Vocab.build(n) == v and Vocab.build(n + 1) != v


def test_vocab_json_round_trip_and_errors(tmp_path):
    v = Vocab.build(6)
    v.to_json(tmp_path / "a.json")
    v.to_json(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    back = Vocab.from_json(tmp_path / "a.json")
    assert back == v and back.token_to_id == v.token_to_id
    assert np.array_equal(back.coord_row, v.coord_row)
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["max_grid_n"] == 6 and doc["tokens"] == list(v.id_to_token)

    with pytest.raises(InputError, match="missing.json: vocabulary file does not exist"):
        Vocab.from_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json: vocabulary file is not valid JSON"):
        Vocab.from_json(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="bad.json: is not a mazesearch vocabulary"):
        Vocab.from_json(tmp_path / "bad.json")
    for bad_doc, msg in [({**doc, "n_tokens": len(v) + 1}, "n_tokens=.* but lists"),
                         ({**doc, "format": "other/1"}, "format 'other/1'"),
                         ({**doc, "max_grid_n": 5}, "does not match max_grid_n=5"),
                         ({**doc, "n_tokens": None, "tokens": doc["tokens"][::-1]}, "n_tokens=None"),
                         ({k: doc[k] for k in ("max_grid_n", "tokens")} | {"tokens": doc["tokens"][::-1]},
                          "not in the id order")]:
        (tmp_path / "t.json").write_text(json.dumps(bad_doc))
        with pytest.raises(InputError, match=msg):
            Vocab.from_json(tmp_path / "t.json")
    for tokens, msg in [(doc["tokens"][:-1], "missing"), (doc["tokens"] + ["(0,0)"], "duplicate"),
                        (doc["tokens"][:-1] + ["(9,9)"], "unexpected")]:
        (tmp_path / "t.json").write_text(json.dumps({**doc, "tokens": tokens}))
        with pytest.raises(ValueError, match=msg):
            Vocab.from_json(tmp_path / "t.json")
    for bad in (0, 256, 2.0):
        with pytest.raises(ValueError, match="max_grid_n"):
            Vocab.build(bad)
