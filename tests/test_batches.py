"""mazesearch.model.batches: padded sequences, target masks, device batches, the data order
(length buckets) and the loss of a padded batch against each sequence alone."""

import numpy as np
import pytest
import torch

from helpers import REL_TOL, dfs3_token_sets
from mazesearch.data.tokens import PATH_END, PATH_START, TokenBatch, Vocab
from mazesearch.model import batches as batches_mod
from mazesearch.model import train as train_mod
from mazesearch.model.batches import DataOrder, DeviceBatcher, make_lm_batch, padded_sequences, target_masks
from mazesearch.model.gpt import GPT, ModelConfig


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(4)


@pytest.fixture(scope="module")
def data(vocab) -> tuple[TokenBatch, TokenBatch]:
    return dfs3_token_sets(vocab)


# ---------------------------------------------------------------------------- sequences and masks


def test_padded_sequences_are_the_stored_tokens(data, vocab):
    tokens, _ = data
    rows = np.array([5, 0, 17, 3])
    seqs, lengths = padded_sequences(tokens, rows, vocab.pad_id)
    assert seqs.shape == (4, tokens.lengths[rows].max())
    for k, i in enumerate(rows):
        assert lengths[k] == tokens.lengths[i]
        np.testing.assert_array_equal(seqs[k, : lengths[k]], tokens.tokens(i))
        assert (seqs[k, lengths[k] :] == vocab.pad_id).all()
    prompts, plens = padded_sequences(tokens, rows, vocab.pad_id, upto="prompt")
    for k, i in enumerate(rows):
        np.testing.assert_array_equal(prompts[k, : plens[k]], tokens.prompt(i))
        assert prompts[k, plens[k] - 1] == vocab.id(PATH_START)
    with pytest.raises(ValueError, match="rows must lie"):
        padded_sequences(tokens, np.array([len(tokens)]), vocab.pad_id)


def test_target_masks_hand_computed():
    # two sequences: lengths 6 and 4, prompts (through <PATH_START>) of 3 and 2 tokens
    path, real = target_masks(np.array([3, 2]), np.array([6, 4]), width=5)
    # target j is token j+1: path targets are tokens 3,4,5 / tokens 2,3
    np.testing.assert_array_equal(path, [[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    np.testing.assert_array_equal(real, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def test_loss_mask_selects_exactly_the_path_targets(data, vocab):
    tokens, _ = data
    rows = np.arange(24)
    batch = make_lm_batch(tokens, rows, vocab.pad_id, "path")
    for k, i in enumerate(rows):
        seq = tokens.tokens(i)
        picked = batch.targets[k][batch.loss_mask[k]].numpy()
        np.testing.assert_array_equal(picked, seq[tokens.prompt_len[i] :])  # path cells + <PATH_END>
        assert seq[tokens.prompt_len[i] - 1] == vocab.id(PATH_START)
        assert picked[-1] == vocab.id(PATH_END)
        # teacher forcing: the input at each position is the stored token
        np.testing.assert_array_equal(batch.inputs[k, : len(seq) - 1].numpy(), seq[:-1])
    everything = make_lm_batch(tokens, rows, vocab.pad_id, "all")
    assert int(everything.loss_mask.sum()) == int((tokens.lengths[rows] - 1).sum())
    assert not (everything.targets[everything.loss_mask] == vocab.pad_id).any()
    assert torch.equal(everything.path_mask, batch.path_mask)


def test_data_order_is_epoch_permutations():
    order = DataOrder(n_rows=10, batch_size=3, seed=7)
    epoch0 = np.concatenate([order.rows(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # 3 full batches, no repeats within an epoch
    again = DataOrder(n_rows=10, batch_size=3, seed=7)
    np.testing.assert_array_equal(again.rows(4), order.rows(4))  # pure function of (seed, step)
    assert not np.array_equal(DataOrder(10, 3, seed=8).rows(0), DataOrder(10, 3, seed=7).rows(0))
    with pytest.raises(ValueError, match="batch_size"):
        DataOrder(n_rows=2, batch_size=3, seed=0)


def test_length_buckets_reorder_within_windows_and_cut_padding():
    lengths = np.random.default_rng(0).integers(20, 121, size=1000)  # very mixed sequence lengths
    bs, window, seed = 16, 16, 3
    plain = DataOrder(1000, bs, seed)
    bucketed = DataOrder(1000, bs, seed, lengths, window)
    per_epoch = plain.batches_per_epoch  # 62: windows of 16 batches, the last one of 14
    np.testing.assert_array_equal(plain.rows(0), np.random.default_rng([seed, 0]).permutation(1000)[:bs])
    for epoch in range(2):
        steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        got = [bucketed.rows(s) for s in steps]
        want = [plain.rows(s) for s in steps]
        for w in range(0, per_epoch, window):  # same rows per window as the plain order, reordered
            assert sorted(np.concatenate(got[w:w + window]).tolist()) == sorted(np.concatenate(want[w:w + window]).tolist())
        assert len(set(np.concatenate(got).tolist())) == per_epoch * bs  # each row at most once
        assert [g.tolist() for g in got] != [w.tolist() for w in want]
        assert batches_mod.padding_fraction(lengths, got) < 0.05 < 0.3 < batches_mod.padding_fraction(lengths, want)
    fresh = DataOrder(1000, bs, seed, lengths, window)  # a pure function of the step, any access order
    for s in (70, 3, 123, 62, 61):
        np.testing.assert_array_equal(fresh.rows(s), bucketed.rows(s))
    with pytest.raises(ValueError, match="one length per"):
        DataOrder(1000, bs, seed, lengths[:10], window)


def test_hand_computed_padding_fraction():
    lengths = np.array([5, 3, 9, 9])  # inputs are 4, 2, 8, 8 positions
    assert batches_mod.padding_fraction(lengths, [np.array([0, 1])]) == pytest.approx(2 / 8)
    assert batches_mod.padding_fraction(lengths, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(2 / 24)


@pytest.mark.parametrize("loss_on", ["path", "all"])
def test_device_batcher_equals_make_lm_batch(data, vocab, loss_on):
    tokens, _ = data
    batcher = DeviceBatcher(tokens, vocab.pad_id, loss_on, "cpu")
    for rows in (np.array([3]), np.arange(0, 200, 7), np.argsort(tokens.lengths)[[0, -1, 5]]):
        want, got = make_lm_batch(tokens, rows, vocab.pad_id, loss_on), batcher.batch(rows)
        for name in ("inputs", "targets", "loss_mask", "path_mask"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        assert got.n_tokens == want.n_tokens


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_padded_loss_equals_the_unpadded_losses(data, vocab, positional):
    """A right-padded batch of mixed lengths gives the sum of each sequence's loss computed
    alone without padding (causal attention: padding never reaches a real position)."""
    tokens, _ = data
    rows = np.argsort(tokens.lengths)[[0, 50, 120, -1]]  # shortest to longest
    assert len(set(tokens.lengths[rows].tolist())) > 2
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=int(tokens.lengths.max()),
                      d_vocab=len(vocab), positional=positional)
    model = GPT(cfg, seed=1).eval()
    pad = vocab.token_to_id["<PADDING>"]
    with torch.no_grad():
        for loss_on in ("all", "path"):
            b = make_lm_batch(tokens, rows, pad, loss_on)
            padded, n = train_mod.masked_cross_entropy(model(b.inputs), b.targets, b.loss_mask)
            alone, n_alone = 0.0, 0
            for r in rows:
                one = make_lm_batch(tokens, np.array([r]), pad, loss_on)
                assert one.inputs.shape[1] == tokens.lengths[r] - 1  # no padding at all
                loss, k = train_mod.masked_cross_entropy(model(one.inputs), one.targets, one.loss_mask)
                alone, n_alone = alone + float(loss), n_alone + k
            assert n == n_alone
            assert abs(float(padded) - alone) <= REL_TOL * abs(alone)
            mean = train_mod.mean_masked_cross_entropy(model(b.inputs), b.targets, b.loss_mask)  # the loop's loss
            assert abs(float(mean) - alone / n_alone) <= REL_TOL * abs(alone / n_alone)
