"""The one run loader (mazesearch.model.run_loader): first rows checked against their tokens, the
trained model on the stage's device, its random-init control (issue 29's mend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import write_mazes
from mazesearch.data.tokens import Vocab, encode, write_tokens
from mazesearch.io import InputError, StageError
from mazesearch.model.gpt import GPT, ModelConfig, save_checkpoint
from mazesearch.model.run_loader import control_model, first_rows, load_trained
from mazesearch.params import HeadsSpec


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    vocab = Vocab.build(3)
    vocab.to_json(root / "vocab.json")
    batch, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=12, seed=0)
    write_mazes(batch, root / "mazes" / "probe.parquet")
    write_tokens(encode(batch, vocab), root / "tokens" / "probe.parquet")
    other, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=12, seed=1)  # tokens of other mazes
    write_mazes(batch, root / "mazes" / "swapped.parquet")
    write_tokens(encode(other, vocab), root / "tokens" / "swapped.parquet")
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32, n_ctx=64, d_vocab=len(vocab))
    save_checkpoint(GPT(cfg, seed=3), root / "models")
    return root, vocab, batch


def test_first_rows_are_the_first_mazes_with_their_own_tokens(run):
    root, vocab, batch = run
    tokens, mazes = first_rows("heads", "probe", 5, tokens_dir=root / "tokens", mazes_dir=root / "mazes", vocab=vocab)
    assert len(tokens) == len(mazes) == 5
    assert np.array_equal(mazes.maze_id, batch.maze_id[:5]) and np.array_equal(tokens.maze_id, batch.maze_id[:5])
    want = encode(batch.take(np.arange(5)), vocab)  # an independent encoding of the same mazes
    assert np.array_equal(tokens.padded(vocab.pad_id), want.padded(vocab.pad_id))
    tokens, ids = first_rows("activations", "probe", 4, tokens_dir=root / "tokens", mazes_dir=root / "mazes",
                             vocab=vocab, ids_only=True)
    assert np.array_equal(ids, batch.maze_id[:4]) and len(tokens) == 4


def test_too_many_rows_names_the_key_unless_clipped(run):
    root, vocab, _ = run
    with pytest.raises(StageError, match=r"heads\.n_mazes=13 exceeds the 12 mazes of datasets\.probe"):
        first_rows("heads", "probe", 13, tokens_dir=root / "tokens", mazes_dir=root / "mazes", vocab=vocab)
    tokens, mazes = first_rows("report", "probe", 400, tokens_dir=root / "tokens", mazes_dir=root / "mazes",
                               vocab=vocab, clip=True)
    assert len(tokens) == len(mazes) == 12


def test_tokens_of_other_mazes_are_refused(run):
    root, vocab, _ = run
    with pytest.raises(InputError, match="disagree with the tokens of dataset swapped"):
        first_rows("heads", "swapped", 3, tokens_dir=root / "tokens", mazes_dir=root / "mazes", vocab=vocab)


def test_control_is_the_same_architecture_from_its_seed_alone(run):
    root, vocab, _ = run
    spec = HeadsSpec(num_threads=1, control_seed=7)
    trained, device = load_trained("heads", spec, model_dir=root / "models", vocab=vocab,
                                   vocab_path=root / "vocab.json")
    assert device == torch.device("cpu") and not trained.training
    control = control_model(trained, spec.control_seed)
    assert control.cfg == trained.cfg and not control.training
    again, fresh = control_model(trained, 7), GPT(trained.cfg, seed=7)  # the seed alone, never trained
    for (name, c), a, f, t in zip(control.state_dict().items(), again.state_dict().values(),
                                  fresh.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(c, a) and torch.equal(c, f), name
    assert not all(torch.equal(c, t) for c, t in zip(control.state_dict().values(), trained.state_dict().values()))
    if not torch.cuda.is_available():  # a missing device is one StageError naming the key
        with pytest.raises(StageError, match="heads.device"):
            load_trained("heads", HeadsSpec(device="cuda"), model_dir=root / "models", vocab=vocab,
                         vocab_path=root / "vocab.json")
