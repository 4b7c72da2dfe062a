"""mazesearch.notebook: the run handle (what it reads, what it says is missing) and the maze
tokenizer on TransformerLens (text methods, generate), on the tiny run of
tests/notebook_fixtures.py (the files `dvc repro` would write)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from notebook_fixtures import OPTION_SETS, VOCAB, run, run_dir  # noqa: F401 (fixtures)
from mazesearch.data.tokens import TokenizerOptions, encode, read_tokens, to_text
from mazesearch.notebook import load_run


def test_load_run_reads_every_file(run, run_dir):
    assert (run.dataset, run.suite, len(run), run.grid_n) == ("test", "test", 12, 4)
    stored = read_tokens(run_dir / "data" / "tokens" / "test.parquet")
    assert np.array_equal(run.tokens.flat, stored.flat) and np.array_equal(run.tokens.offsets, stored.offsets)
    pred = run.prediction(3)
    assert pred["true_path"] == run.mazes.path(3).tolist()
    assert pred["predicted_text"] == to_text(run.predictions["predicted_tokens"][3], VOCAB)


def test_a_suite_brings_its_own_tokenizer_options(run_dir):
    other = load_run(run_dir, suite="test_sorted")
    assert other.dataset == "test" and other.tokenizer_options.edge_order == "sorted"
    sorted_tokens = encode(other.mazes, VOCAB, TokenizerOptions(edge_order="sorted"))
    assert np.array_equal(other.tokens.flat, sorted_tokens.flat)  # what evaluation fed the model
    assert not np.array_equal(other.tokens.flat, read_tokens(run_dir / "data" / "tokens" / "test.parquet").flat)
    bare = load_run(run_dir, dataset="val")  # never evaluated: no predictions
    assert bare.suite is None and bare.prediction(0) is None
    with pytest.raises(ValueError, match="evaluated on dataset 'test', not 'val'"):
        load_run(run_dir, dataset="val", suite="test")
    with pytest.raises(FileNotFoundError, match="dvc repro evaluate@nope"):
        load_run(run_dir, suite="nope")


@pytest.mark.parametrize("missing, says", [
    ("models/model.safetensors", "dvc repro train"),
    ("data/mazes/test.parquet", "dvc repro generate@test"),
    ("data/vocab.json", "dvc repro vocab"),
])
def test_a_missing_file_is_named_with_the_stage_that_makes_it(run_dir, tmp_path, missing, says):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing}: missing; build it with `{says}`"):
        load_run(copy)


# ---------------------------------------------------------------------------- tokenizer


def test_transformer_lens_text_methods_match_our_decoding(run):
    model = run.model
    for i in range(len(run)):
        ids = run.tokens.tokens(i).astype(np.int64)
        text = to_text(ids, VOCAB)
        assert model.to_str_tokens(torch.from_numpy(ids)) == text.split()
        assert model.to_string(torch.from_numpy(ids)) == text
        assert model.to_tokens(text)[0].tolist() == ids.tolist()  # no BOS, no EOS added
    for opts in OPTION_SETS:  # every token form reads back exactly (pair + walls runs past n_ctx)
        ids = encode(run.mazes.take(np.arange(1)), VOCAB, opts).tokens(0).astype(np.int64)
        assert model.to_tokens(to_text(ids, VOCAB), truncate=False)[0].tolist() == ids.tolist()
    short, long = run.text(0, prompt=True), run.text(1)
    batch = model.to_tokens([short, long])  # right-padded with <PADDING>
    assert batch[0, len(short.split()):].eq(VOCAB.pad_id).all() and batch.shape[1] == len(long.split())
    with pytest.raises(ValueError, match=r"position 1: token '\(9,9\)' is not in the vocabulary"):
        model.to_tokens("<ADJLIST_START> (9,9)")


def test_generate_equals_our_greedy_rollout(run):
    from mazesearch.evaluation.rollout import greedy_rollout_cached

    prompts = [run.tokens.prompt(i) for i in range(4)]
    cap = run.grid_n**2 + run.grid_n + 1  # evaluation's, unary coordinates
    ours = greedy_rollout_cached(run.gpt, prompts, cap, VOCAB.id("<PATH_END>"), VOCAB.pad_id)
    for i in range(4):
        theirs = run.generate(i)
        assert theirs.tolist() == ours[i].tolist()
        assert theirs.tolist() == list(run.predictions["predicted_tokens"][i])  # stage evaluate's
