"""Activation cache (mazesearch.interp.activations, stages.activations).

Oracle for the values: TransformerLens' run_with_cache on each maze's own, unpadded sequence.
"""

import json

import numpy as np
import pytest
import torch
import yaml

from helpers import REL_TOL, rel_err

import mazesearch.interp.activations as act
from mazesearch.io import InputError, StageError
from mazesearch.interp.activation_store import ActivationStore
from mazesearch.interp.activations import NpyAppender, build_index, extract_activations, resolve_layers
from mazesearch.interp.bridge import to_bridge
from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import MazeBatch, write_mazes
from mazesearch.model.gpt import GPT, ModelConfig, save_checkpoint
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, from_text, max_sequence_length, write_tokens

VOCAB = Vocab.build(4)
RESID = ["embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def tiny_model(positional: str = "learned", seed: int = 0) -> GPT:
    n_ctx = max_sequence_length(4, TokenizerOptions(coord="pair"))
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=n_ctx,
                      d_vocab=len(VOCAB), positional=positional)
    return GPT(cfg, seed=seed)


def dfs_tokens(n_mazes: int = 13, grid_n: int = 3, seed: int = 1, **opts):
    mazes, _ = build_mazes(generator="dfs", grid_n=grid_n, n_mazes=n_mazes, seed=seed)
    return mazes, encode(mazes, VOCAB, TokenizerOptions(**opts))


def bridge_oracle(model: GPT, tokens, index, hooks: list[str]) -> dict[str, np.ndarray]:
    """Mazes through the bridge unpadded (one call per sequence length): ``hook -> float32 [rows, width]``."""
    bridge = to_bridge(model)
    out = {h: np.zeros((len(index), 0), np.float32) for h in hooks}
    maze_rows, token_pos = index["maze_row"].to_numpy(), index["token_pos"].to_numpy()
    for length in np.unique(tokens.lengths):
        group = np.flatnonzero(tokens.lengths == length)
        ids = torch.tensor(np.stack([tokens.tokens(m) for m in group]).astype(np.int64))
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(ids, names_filter=hooks)
        rows = np.flatnonzero(np.isin(maze_rows, group))
        b, p = torch.tensor(np.searchsorted(group, maze_rows[rows])), torch.tensor(token_pos[rows])
        for h in hooks:
            picked = cache[h][b, p].reshape(len(rows), -1).numpy()
            if out[h].shape[1] == 0:
                out[h] = np.full((len(index), picked.shape[1]), np.nan, np.float32)
            out[h][rows] = picked
    assert all(np.isfinite(v).all() for v in out.values())  # every row filled
    return out


def two_by_two_mazes() -> MazeBatch:
    # maze 0: edges (0,1), (0,2), (1,3) open; path 0 -> 1 -> 3. maze 1: all open; path 3 -> 2.
    open_ = np.array([[1, 0, 1, 1], [1, 1, 1, 1]], np.uint8)
    return MazeBatch(grid_n=2, generator="test", open=open_, origin=np.array([0, 3], np.int32),
                     target=np.array([3, 2], np.int32), path_flat=np.array([0, 1, 3, 3, 2], np.int32),
                     path_offsets=np.array([0, 3, 5]), n_shortest_paths=np.ones(2, np.int64),
                     forks_on_path=np.zeros(2, np.int16), n_dead_ends=np.zeros(2, np.int16))


# ---------------------------------------------------------------------------- index


def test_index_hand_checked_unary():
    mazes = two_by_two_mazes()
    tb = encode(mazes, VOCAB, TokenizerOptions(edge_order="sorted"))
    text0 = ("<ADJLIST_START> (0,0) <--> (0,1) ; (0,0) <--> (1,0) ; (0,1) <--> (1,1) ; <ADJLIST_END> "
             "<ORIGIN_START> (0,0) <ORIGIN_END> <TARGET_START> (1,1) <TARGET_END> "
             "<PATH_START> (0,0) (0,1) (1,1) <PATH_END>")
    assert np.array_equal(tb.tokens(0), from_text(text0, VOCAB))
    index = build_index(tb, VOCAB, grid_n=2)
    assert list(index.columns) == ["row", "maze_row", "maze_id", "kind", "path_step", "current_cell", "token_pos"]
    # maze 0: <TARGET_END> at 19, <PATH_START> at 20, path cells 0, 1, 3 at 21..23.
    # maze 1: 4 edges -> prompt 1 + 4*4 + 1 + 3 + 3 + 1 = 25 tokens: 23, 24, then cells 3, 2 at 25, 26.
    expect = [
        (0, "target_end", 0, -1, 19), (0, "path_start", 0, -1, 20),
        (0, "path", 1, 0, 21), (0, "path", 2, 1, 22), (0, "path", 3, 3, 23),
        (1, "target_end", 0, -1, 23), (1, "path_start", 0, -1, 24),
        (1, "path", 1, 3, 25), (1, "path", 2, 2, 26),
    ]
    got = list(zip(index["maze_row"], index["kind"], index["path_step"], index["current_cell"], index["token_pos"]))
    assert got == expect
    assert index["row"].tolist() == list(range(9))
    assert index["maze_id"].tolist() == [mazes.maze_id[m] for m, *_ in expect]

    only = build_index(tb, VOCAB, 2, positions=["path_start"])
    assert only["token_pos"].tolist() == [20, 24] and set(only["kind"]) == {"path_start"}


def test_index_pair_coordinates_sit_on_the_second_token():
    mazes = two_by_two_mazes()
    tb = encode(mazes, VOCAB, TokenizerOptions(coord="pair", edge_order="sorted"))
    index = build_index(tb, VOCAB, 2)
    P = tb.prompt_len
    path = index[index["kind"] == "path"]
    assert path["token_pos"].tolist() == [P[0] + 1, P[0] + 3, P[0] + 5, P[1] + 1, P[1] + 3]
    assert path["current_cell"].tolist() == [0, 1, 3, 3, 2]
    for m, pos, cell in zip(path["maze_row"], path["token_pos"], path["current_cell"]):
        assert VOCAB.id_to_token[tb.tokens(m)[pos]] == f",{cell % 2})"


def test_index_rejects_bad_input():
    mazes = two_by_two_mazes()
    tb = encode(mazes, VOCAB, TokenizerOptions())
    with pytest.raises(ValueError, match="positions"):
        build_index(tb, VOCAB, 2, positions=["path", "path"])
    with pytest.raises(ValueError, match="positions"):
        build_index(tb, VOCAB, 2, positions=["origin"])
    with pytest.raises(ValueError, match="not a cell of a 1x1 grid"):
        build_index(tb, VOCAB, 1)
    broken = encode(mazes, VOCAB, TokenizerOptions())
    broken.flat[broken.offsets[1] + broken.prompt_len[1] - 1] = VOCAB.id(";")
    with pytest.raises(ValueError, match="sequence 1 does not have <PATH_START>"):
        build_index(broken, VOCAB, 2)


# ---------------------------------------------------------------------------- names


def test_resolve_layers_folds_residual_aliases():
    layers, aliases = resolve_layers(
        ["embed", "resid_post", "blocks.0.hook_resid_pre", "blocks.1.hook_in", "blocks.0.hook_out",
         "ln_final.hook_in", "resid_pre", "embed.hook_out", "hook_embed", "blocks.1.mlp.hook_post"], n_layers=2)
    assert layers == RESID + ["hook_embed", "blocks.1.mlp.hook_post"]
    assert aliases["embed"] == ["blocks.0.hook_resid_pre"]
    assert aliases["blocks.0.hook_resid_post"] == ["blocks.1.hook_in", "blocks.0.hook_out", "blocks.1.hook_resid_pre"]
    assert aliases["blocks.1.hook_resid_post"] == ["ln_final.hook_in"]
    assert aliases["hook_embed"] == ["embed.hook_out"]
    with pytest.raises(ValueError, match="only 2 blocks"):
        resolve_layers(["blocks.2.hook_resid_post"], 2)
    with pytest.raises(ValueError, match=r"\[batch, head, pos, pos\]"):
        resolve_layers(["blocks.0.attn.hook_pattern"], 2)
    with pytest.raises(ValueError, match="non-empty list"):
        resolve_layers("resid_post", 2)


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_cached_values_equal_bridge_run_with_cache(tmp_path, monkeypatch, positional):
    model = tiny_model(positional, seed=3)
    _, tb = dfs_tokens(13)
    batches = []  # the rows the fast path picked, before the float16 cast
    real_runner = act.gpt_runner

    def spy(m, layers):
        run = real_runner(m, layers)

        def recorded(ids, pick):
            picked = run(ids, pick)
            batches.append({k: v.clone() for k, v in picked.items()})
            return picked

        return recorded

    monkeypatch.setattr(act, "gpt_runner", spy)
    store = extract_activations(model, tb, VOCAB, 3, tmp_path / "acts", batch_size=5)
    assert store.meta["backend"] == "gpt" and store.layers == RESID and len(batches) == 3
    tl = {"embed": "blocks.0.hook_resid_pre", **{l: l for l in RESID[1:]}}
    extra = ["hook_embed", "hook_pos_embed"] if positional == "learned" else []
    oracle = bridge_oracle(model, tb, store.index, list(tl.values()) + extra)
    for layer in RESID:
        pre_cast = torch.cat([b[layer] for b in batches]).numpy()  # [rows, d_model] float32
        assert pre_cast.dtype == np.float32 and pre_cast.shape == (len(store), 32)
        assert rel_err(pre_cast, oracle[tl[layer]]) <= REL_TOL, layer
        assert np.array_equal(store.load(layer), pre_cast.astype(np.float16)), layer  # the cast is all
    if positional == "learned":  # "embed" is hook_embed + hook_pos_embed
        assert np.abs(oracle["hook_embed"] + oracle["hook_pos_embed"] - oracle["blocks.0.hook_resid_pre"]).max() == 0


def test_bridge_backend_arbitrary_hooks_and_alias_dedup(tmp_path):
    model = tiny_model(seed=4)
    _, tb = dfs_tokens(7)
    hooks = ["embed", "blocks.0.ln1.hook_in", "blocks.0.attn.hook_out", "blocks.0.hook_attn_out",
             "blocks.1.mlp.hook_post", "resid_pre", "hook_embed"]
    store = extract_activations(model, tb, VOCAB, 3, tmp_path / "b", batch_size=3, hooks=hooks)
    assert store.meta["backend"] == "bridge"
    assert store.layers == ["embed", "blocks.0.attn.hook_out", "blocks.1.mlp.hook_post",
                            "blocks.0.hook_resid_post", "hook_embed"]
    aliases = {layer["name"]: layer["aliases"] for layer in store.meta["layers"]}
    # one tensor in TL's cache under several names -> one file
    assert aliases["embed"] == ["blocks.0.hook_resid_pre", "blocks.0.ln1.hook_in"]
    assert aliases["blocks.0.attn.hook_out"] == ["blocks.0.hook_attn_out"]
    assert aliases["blocks.0.hook_resid_post"] == ["blocks.1.hook_resid_pre"]
    assert sorted(p.name for p in (tmp_path / "b").glob("*.npy")) == sorted(f"{l}.npy" for l in store.layers)
    assert store.load("blocks.1.mlp.hook_post").shape == (len(store), 64)

    tl = {l: ("blocks.0.hook_resid_pre" if l == "embed" else l) for l in store.layers}
    oracle = bridge_oracle(model, tb, store.index, list(tl.values()))
    for layer in store.layers:
        want = oracle[tl[layer]]
        got = store.load(layer).astype(np.float32)
        scale = REL_TOL * np.abs(want).max()  # float32 differences, then float16 rounding (2^-11)
        assert np.all(np.abs(got - want) <= scale + 2.0**-11 * np.abs(want)), layer

    fast = extract_activations(model, tb, VOCAB, 3, tmp_path / "g", batch_size=3)
    for layer in RESID[:2]:  # two backends, same activations up to float16 rounding
        a, b = fast.load(layer).astype(np.float32), store.load(layer).astype(np.float32)
        assert np.all(np.abs(a - b) <= REL_TOL * np.abs(a).max() + 2.0**-10 * np.abs(a)), layer

    with pytest.raises(ValueError, match="unknown TransformerLens hooks"):
        extract_activations(model, tb, VOCAB, 3, tmp_path / "x", hooks=["blocks.0.hook_nonsense"])
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- writing


def test_writer_streams_one_batch_at_a_time(tmp_path, monkeypatch):
    _, tb = dfs_tokens(13)
    calls = []
    real_append = NpyAppender.append
    monkeypatch.setattr(NpyAppender, "append",
                        lambda self, rows: (calls.append((self.path.name, len(rows))), real_append(self, rows))[1])
    store = extract_activations(tiny_model(), tb, VOCAB, 3, tmp_path / "a", batch_size=4)
    index = store.index
    rows_per_batch = np.bincount(index["maze_row"].to_numpy() // 4)  # 4 batches: 4, 4, 4, 1 mazes
    for layer in store.layers:
        sizes = [n for name, n in calls if name == f"{layer}.npy"]
        assert sizes == rows_per_batch.tolist()  # each write is exactly one batch's rows
    assert max(n for _, n in calls) < len(index) / 2
    assert len(calls) == 4 * len(store.layers)
    full = np.load(tmp_path / "a" / "embed.npy")  # a plain, complete .npy
    assert full.shape == (len(index), 32) and np.isfinite(full).all()


def test_failed_run_leaves_previous_cache_untouched(tmp_path, monkeypatch):
    _, tb = dfs_tokens(9)
    out = tmp_path / "acts"
    extract_activations(tiny_model(seed=1), tb, VOCAB, 3, out, batch_size=4)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real_append = NpyAppender.append

    def failing(self, rows):
        calls.append(1)
        if len(calls) == 5:  # mid-way through the second batch
            raise RuntimeError("disk full")
        real_append(self, rows)

    monkeypatch.setattr(NpyAppender, "append", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        extract_activations(tiny_model(seed=2), tb, VOCAB, 3, out, batch_size=4)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts"]  # no .tmp left behind
    calls.clear()
    with pytest.raises(RuntimeError, match="disk full"):
        extract_activations(tiny_model(seed=2), tb, VOCAB, 3, tmp_path / "fresh", batch_size=4)
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "fresh.tmp").exists()


def test_same_inputs_give_identical_bytes(tmp_path):
    _, tb = dfs_tokens(9)
    for name in ("a", "b"):
        extract_activations(tiny_model(seed=5), tb, VOCAB, 3, tmp_path / name, batch_size=4, meta={"model": "x"})
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(["index.parquet", "meta.json"] + [f"{l}.npy" for l in RESID])
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    a = ActivationStore(tmp_path / "a")
    shallow = extract_activations(tiny_model(seed=5), tb, VOCAB, 3, tmp_path / "s", batch_size=4,
                                  hooks=["blocks.0.hook_resid_post"])  # runs block 0 only
    assert shallow.layers == ["blocks.0.hook_resid_post"]
    assert np.array_equal(shallow.load("blocks.0.hook_resid_post"), a.load("blocks.0.hook_resid_post"))
    other = extract_activations(tiny_model(seed=6), tb, VOCAB, 3, tmp_path / "c", batch_size=4)
    assert a.index.equals(other.index)
    assert not np.array_equal(a.load("blocks.1.hook_resid_post"), other.load("blocks.1.hook_resid_post"))
    assert a.meta["weights_sha256"] != other.meta["weights_sha256"]


def test_bad_arguments_and_store_errors(tmp_path):
    _, tb = dfs_tokens(5)
    model = tiny_model()
    with pytest.raises(ValueError, match="n_mazes=6 must be in 1..5"):
        extract_activations(model, tb, VOCAB, 3, tmp_path / "a", n_mazes=6)
    with pytest.raises(ValueError, match="batch_size"):
        extract_activations(model, tb, VOCAB, 3, tmp_path / "a", batch_size=0)
    with pytest.raises(ValueError, match="backend"):
        extract_activations(model, tb, VOCAB, 3, tmp_path / "a", backend="fast")
    with pytest.raises(ValueError, match="backend 'gpt' reads only the residual stream"):
        extract_activations(model, tb, VOCAB, 3, tmp_path / "a", hooks=["blocks.0.mlp.hook_post"], backend="gpt")
    short = GPT(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_head=16, d_mlp=64, n_ctx=20, d_vocab=len(VOCAB)))
    with pytest.raises(ValueError, match="n_ctx is 20"):
        extract_activations(short, tb, VOCAB, 3, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(InputError, match="not an activation cache"):
        ActivationStore(tmp_path / "missing")
    store = extract_activations(model, tb, VOCAB, 3, tmp_path / "ok", n_mazes=3)
    assert store.meta["n_mazes"] == 3 and set(store.index["maze_row"]) == {0, 1, 2}
    with pytest.raises(ValueError, match="not in this cache"):
        store.load("blocks.7.hook_resid_post")
    assert isinstance(store.load("embed"), np.memmap)


def test_damaged_store_is_an_input_error_naming_the_file(tmp_path):
    import shutil

    _, tb = dfs_tokens(5)
    extract_activations(tiny_model(), tb, VOCAB, 3, tmp_path / "ok", n_mazes=3)

    def cut(path):
        path.write_bytes(path.read_bytes()[:-10])

    def meta(edit):
        return lambda d: (d / "meta.json").write_text(json.dumps(edit(json.loads((d / "meta.json").read_text()))))

    cases = [  # opening the store checks meta.json, that index.parquet exists, every .npy header and size
        (lambda d: (d / "meta.json").unlink(), r"meta.json: .* is not an activation cache \(meta.json is missing\)"),
        (lambda d: (d / "meta.json").write_text("{oops"), "meta.json: activation cache meta is not valid JSON"),
        (meta(lambda m: {**m, "format": "x/1"}), "meta.json: format 'x/1' is not"),
        (meta(lambda m: {**m, "n_rows": "7"}), "meta.json: n_rows must be a non-negative int"),
        (meta(lambda m: {**m, "layers": [{"name": "embed"}]}), "meta.json: layers must be a list"),
        (lambda d: (d / "index.parquet").unlink(), "index.parquet: activation index does not exist"),
        (lambda d: (d / "embed.npy").unlink(), "embed.npy: activation layer file does not exist"),
        (lambda d: cut(d / "embed.npy"), r"embed.npy: activation layer file has \d+ bytes, its header says \d+ \(truncated\)"),
        (lambda d: (d / "embed.npy").write_bytes(b"junk"), "embed.npy: activation layer file is not a .npy array"),
        (lambda d: np.save(d / "embed.npy", np.zeros((2, 32), np.float32)),
         r"embed.npy: activation layer file is float32 \[2, 32\], meta.json says float16"),
    ]
    for i, (damage, match) in enumerate(cases):
        d = tmp_path / f"bad{i}"
        shutil.copytree(tmp_path / "ok", d)
        damage(d)
        with pytest.raises(InputError, match=match):
            ActivationStore(d)
    d = tmp_path / "bad_index"  # the index is read (and checked) when first used
    shutil.copytree(tmp_path / "ok", d)
    cut(d / "index.parquet")
    with pytest.raises(InputError, match="index.parquet: activation index is not readable Parquet"):
        ActivationStore(d).index
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(tmp_path / "ok" / "index.parquet").slice(1), d / "index.parquet")
    with pytest.raises(InputError, match=r"index.parquet: activation index has \d+ rows, meta.json says"):
        ActivationStore(d).index


# ---------------------------------------------------------------------------- stage


def test_stage_caches_trained_and_random_control(tmp_path):
    from stages.activations import main

    mazes, tb = dfs_tokens(12)
    (tmp_path / "mazes").mkdir()
    write_mazes(mazes, tmp_path / "mazes" / "test.parquet")
    write_tokens(tb, tmp_path / "tokens" / "test.parquet")
    VOCAB.to_json(tmp_path / "vocab.json")
    save_checkpoint(tiny_model(seed=7), tmp_path / "models")
    ds = {"generator": "dfs", "grid_n": 3, "n_mazes": 12, "seed": 1}
    params = {"datasets": {"train": ds, "val": ds, "test": ds}, "tokenizer": {"max_grid_n": 4},
              "activations": {"dataset": "test", "n_mazes": 10, "batch_size": 4, "control_seed": 9}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["--params", str(tmp_path / "params.yaml"), "--model-dir", str(tmp_path / "models"),
            "--tokens-dir", str(tmp_path / "tokens"), "--mazes-dir", str(tmp_path / "mazes"),
            "--vocab", str(tmp_path / "vocab.json"), "--out-dir", str(tmp_path / "acts")]
    main(argv)
    trained, random_init = ActivationStore(tmp_path / "acts" / "trained"), ActivationStore(tmp_path / "acts" / "random")
    assert trained.meta["model"] == "trained" and random_init.meta["model"] == "random"
    assert random_init.meta["control_seed"] == 9 and trained.meta["dataset"] == "test"
    assert trained.layers == random_init.layers == RESID
    assert trained.index.equals(random_init.index) and trained.meta["n_mazes"] == 10
    control = GPT(tiny_model().cfg, seed=9)
    assert random_init.meta["weights_sha256"] == act.weights_digest(control)
    assert json.loads((tmp_path / "acts" / "trained" / "meta.json").read_text())["model_config"]["d_model"] == 32

    params["activations"]["n_mazes"] = 13
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(StageError, match="activations.n_mazes=13 exceeds the 12 mazes"):
        main(argv)
