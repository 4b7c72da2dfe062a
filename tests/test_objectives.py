"""Sample-efficiency levers (issue 26): decision weights against evaluation.metrics.decision_points,
random position ids, the size curriculum's data order, the lookahead heads (absent from the
exported model), and a killed run with every lever on resuming to the same weights."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import dfs3_token_sets
from mazesearch.data.dataset import build_mazes
from mazesearch.data.tokens import PAD, TokenizerOptions, Vocab, encode
from mazesearch.evaluation.metrics import decision_points
from mazesearch.model.batches import DataOrder, DeviceBatcher
from mazesearch.model.gpt import GPT, ModelConfig
from mazesearch.model.objectives import (decision_targets, lookahead_loss, random_positions,
                                         target_weights)
from mazesearch.model.train import mean_masked_cross_entropy, train
from mazesearch.params import ModelSpec, TrainSpec

MODEL = ModelSpec(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(**overrides) -> TrainSpec:
    base = dict(device="cpu", batch_size=16, max_steps=24, lr=3e-3, warmup_steps=4, eval_every=8,
                eval_batches=2, checkpoint_every=5, num_threads=1, seed=0)
    return TrainSpec(**{**base, **overrides})


def sha(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- decision weights


@pytest.mark.parametrize("dataset", [
    dict(generator="wilson", grid_n=7, sizes=[3, 4], placement="random", seed=5),
    dict(generator="percolation", grid_n=4, p=0.6, seed=6),  # cycles: degrees up to 4
])
def test_decision_targets_match_the_metrics_decision_points(dataset):
    vocab = Vocab.build(8)
    mazes, _ = build_mazes(n_mazes=150, **dataset)
    tokens = encode(mazes, vocab)
    flags = decision_targets(tokens, vocab)
    k, off = decision_points(mazes)  # oracle: path position of each decision cell
    want = np.zeros(len(tokens.flat), dtype=bool)
    for i in range(len(mazes)):
        first = int(tokens.offsets[i]) + int(tokens.prompt_len[i])  # the origin token
        want[first + 1 + k[off[i] : off[i + 1]]] = True  # the target after decision cell k
    assert want.sum() > 50
    np.testing.assert_array_equal(flags, want)


def test_decision_weights_refuse_other_token_texts():
    vocab = Vocab.build(4)
    mazes, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=5, seed=1)
    with pytest.raises(ValueError, match="coord: unary"):
        decision_targets(encode(mazes, vocab, TokenizerOptions(coord="pair")), vocab)
    with pytest.raises(ValueError, match="edges: adjlist"):
        decision_targets(encode(mazes, vocab, TokenizerOptions(edges="walls")), vocab)
    assert target_weights(encode(mazes, vocab), vocab, 1.0) is None


def test_weighted_batch_loss_is_the_weighted_mean():
    vocab = Vocab.build(4)
    tokens, _ = dfs3_token_sets(vocab)
    flags = decision_targets(tokens, vocab)
    batcher = DeviceBatcher(tokens, vocab.token_to_id[PAD], "path", target_weight=target_weights(tokens, vocab, 3.0))
    rows = np.arange(8)
    batch = batcher.batch(rows)
    logits = torch.randn(*batch.targets.shape, len(vocab), generator=torch.Generator().manual_seed(0))
    got = float(mean_masked_cross_entropy(logits, batch.targets, batch.loss_weight))
    num = den = 0.0  # oracle: walk each sequence's path targets by hand
    for b, r in enumerate(rows):
        start, plen, length = int(tokens.offsets[r]), int(tokens.prompt_len[r]), int(tokens.lengths[r])
        for t in range(plen, length):  # target token index t is predicted at input position t-1
            w = 3.0 if flags[start + t] else 1.0
            ce = float(F.cross_entropy(logits[b, t - 1][None], batch.targets[b, t - 1][None]))
            num, den = num + w * ce, den + w
    assert got == pytest.approx(num / den, rel=1e-5)
    assert (batch.loss_weight > 1).any()


# ---------------------------------------------------------------------------- random positions


def test_random_positions_sorted_in_range_and_a_pure_function():
    a = random_positions(3, 7, batch=16, width=40, max_position=64)
    assert a.shape == (16, 40) and a.min() >= 0 and a.max() < 64
    assert (np.diff(a, axis=1) > 0).all()  # sorted, distinct
    np.testing.assert_array_equal(a, random_positions(3, 7, 16, 40, 64))
    assert not np.array_equal(a, random_positions(3, 8, 16, 40, 64))
    assert not np.array_equal(a, random_positions(4, 7, 16, 40, 64))
    assert len({tuple(r) for r in a}) == 16  # rows differ
    with pytest.raises(ValueError, match="max_position"):
        random_positions(0, 0, 2, 65, 64)


def test_rotary_model_sees_the_given_positions():
    """Rotary attention depends on position differences only: a constant shift leaves the
    logits unchanged; a gap in the ids changes them (so the ids reach the attention)."""
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=64, d_vocab=30,
                      positional="rotary")
    model = GPT(cfg, seed=0)
    tokens = torch.randint(0, 30, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(tokens)
    shifted = model(tokens, torch.arange(12).repeat(3, 1) + 17)
    assert torch.allclose(plain, shifted, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))
    gap = torch.arange(12).repeat(3, 1) + (torch.arange(12) >= 6) * 5
    assert not torch.allclose(plain[:, 6:], model(tokens, gap)[:, 6:], atol=1e-3)
    torch.testing.assert_close(plain[:, :6], model(tokens, gap)[:, :6])  # causal: earlier ones unchanged


# ---------------------------------------------------------------------------- the curriculum


def test_curriculum_visits_every_row_per_epoch_small_to_large():
    rng = np.random.default_rng(0)
    n, bs = 103, 8
    sizes = rng.integers(10, 14, n)
    lengths = sizes * 3 + rng.integers(0, 5, n)
    order = DataOrder(n, bs, seed=1, lengths=lengths, length_window=3, sizes=sizes, curriculum_epochs=1)
    per_epoch = n // bs
    epoch0 = [order.rows(s) for s in range(per_epoch)]
    flat0 = np.concatenate(epoch0)
    assert len(set(flat0.tolist())) == len(flat0) == per_epoch * bs  # each row at most once
    windows = [np.concatenate(epoch0[w : w + 3]) for w in range(0, per_epoch, 3)]
    for a, b in zip(windows, windows[1:]):  # window by window: small -> large
        assert sizes[a].max() <= sizes[b].min()
    assert sizes[epoch0[0]].max() < sizes[epoch0[-1]].min()
    epoch1 = np.concatenate([order.rows(s) for s in range(per_epoch, 2 * per_epoch)])
    assert np.corrcoef(np.arange(len(epoch1)), sizes[epoch1])[0, 1] < 0.5  # epoch 1: shuffled again
    fresh = DataOrder(n, bs, seed=1, lengths=lengths, length_window=3, sizes=sizes, curriculum_epochs=1)
    for s in (2 * per_epoch - 1, 5, 0):  # a pure function of the step, in any visiting order
        np.testing.assert_array_equal(fresh.rows(s), order.rows(s))
    plain = DataOrder(n, bs, seed=1, lengths=lengths, length_window=3)
    np.testing.assert_array_equal(plain.rows(per_epoch + 2), order.rows(per_epoch + 2))


# ---------------------------------------------------------------------------- lookahead heads


def test_lookahead_loss_against_a_hand_loop():
    g = torch.Generator().manual_seed(0)
    b, T, V = 3, 9, 7
    targets = torch.randint(0, V, (b, T), generator=g)
    path = torch.zeros(b, T, dtype=torch.bool)
    path[0, 4:9], path[1, 2:6], path[2, 7:9] = True, True, True
    ahead = [torch.randn(b, T, V, generator=g) for _ in range(2)]
    per_head = []
    for m, logits in enumerate(ahead, start=1):
        ces = [float(F.cross_entropy(logits[i, j][None], targets[i, j + m][None]))
               for i in range(b) for j in range(T - m) if path[i, j] and path[i, j + m]]
        per_head.append(sum(ces) / len(ces))
    assert float(lookahead_loss(ahead, targets, path)) == pytest.approx(sum(per_head) / 2, rel=1e-5)


def test_lookahead_heads_are_not_exported_and_the_bridge_agrees():
    from mazesearch.interp.bridge import to_bridge

    vocab = Vocab.build(4)
    tokens, val = dfs3_token_sets(vocab)
    plain = train(MODEL, spec(max_steps=12), tokens, val, vocab, progress=False)
    aux = train(MODEL, spec(max_steps=12, lookahead=2, lookahead_weight=1.0), tokens, val, vocab, progress=False)
    assert isinstance(aux.model, GPT)
    assert set(aux.model.state_dict()) == set(plain.model.state_dict())
    assert sha(aux.model) != sha(plain.model)  # the heads' gradients reached the trunk
    x = torch.from_numpy(np.asarray(tokens.flat[: int(tokens.offsets[1])], dtype=np.int64))[None]
    ours = aux.model.eval()(x)
    theirs = to_bridge(aux.model)(x)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4 * float(ours.abs().max()))


# ---------------------------------------------------------------------------- every lever, resumed


def test_every_lever_on_resumes_bit_exactly(tmp_path):
    vocab = Vocab.build(4)
    tokens, val = dfs3_token_sets(vocab)
    levers = dict(decision_weight=2.0, position_ids="random", max_position=64, curriculum_epochs=1,
                  lookahead=1, length_window=2)
    whole = train(MODEL, spec(**levers), tokens, val, vocab, progress=False)

    class Killed(Exception):
        pass

    def kill(step):
        if step == 13:
            raise Killed

    with pytest.raises(Killed):
        train(MODEL, spec(**levers), tokens, val, vocab, checkpoint_dir=tmp_path, progress=False, on_step=kill)
    resumed = train(MODEL, spec(**levers), tokens, val, vocab, checkpoint_dir=tmp_path, progress=False)
    assert resumed.resumed_from == 10
    assert sha(resumed.model) == sha(whole.model) and resumed.metrics == whole.metrics
    off = train(MODEL, spec(length_window=2), tokens, val, vocab, progress=False)
    assert sha(off.model) != sha(whole.model)


def test_learned_positions_refuse_ids_past_n_ctx():
    vocab = Vocab.build(4)
    tokens, val = dfs3_token_sets(vocab)
    learned = MODEL.model_copy(update={"positional": "learned"})
    with pytest.raises(ValueError, match="max_position=500 exceeds"):
        train(learned, spec(position_ids="random", max_position=500), tokens, val, vocab, progress=False)
    with pytest.raises(ValueError, match="max_position=20 is smaller"):
        train(MODEL, spec(position_ids="random", max_position=20), tokens, val, vocab, progress=False)
