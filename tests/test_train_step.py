"""The one training step (mazesearch.model.train.train_step): it equals a hand-written step, the
benchmarks go through it, and no second copy of forward + loss + backward + clip + step exists."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import dfs3_token_sets
from mazesearch.data.tokens import PAD, Vocab
from mazesearch.model.batches import DataOrder, DeviceBatcher, make_lm_batch
from mazesearch.model.gpt import GPT, ModelConfig
from mazesearch.model.schedule import make_optimizer
from mazesearch.model.train import train_step
from mazesearch.params import TrainSpec

LIBRARY = Path(__file__).resolve().parents[1] / "mazesearch"


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    vocab = Vocab.build(4)
    train_tokens, _ = dfs3_token_sets(vocab)
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=int(train_tokens.lengths.max()),
                      d_vocab=len(vocab), positional="rotary")
    return vocab, train_tokens, cfg


def reference_step(model, optimizer, batch, grad_clip):
    """The training step as written before issue 26 (the benchmark's frozen 'legacy' loop): the
    boolean-mask loss, a plain backward, clipping and AdamW. An oracle independent of train_step."""
    picked = batch.loss_mask
    loss = F.cross_entropy(model(batch.inputs)[picked].float(), batch.targets[picked])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


@pytest.mark.parametrize("loss_on", ["path", "all"])
def test_train_step_equals_the_hand_written_step(setup, loss_on):
    vocab, tokens, cfg = setup
    pad = vocab.token_to_id[PAD]
    ours, ref = GPT(cfg, seed=0), GPT(cfg, seed=0)
    opt_ours = make_optimizer(ours, 3e-3, 0.1, 0.9, 0.99)
    opt_ref = make_optimizer(ref, 3e-3, 0.1, 0.9, 0.99)
    for step in range(4):
        batch = make_lm_batch(tokens, np.arange(16 * step, 16 * step + 16), pad, loss_on)
        got = train_step(ours, opt_ours, batch, grad_clip=0.5)
        want = reference_step(ref, opt_ref, batch, grad_clip=0.5)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        scale = float(b.abs().max()) + 1e-12
        assert float((a - b).abs().max()) <= 1e-5 * scale, name


def test_train_step_clips_and_steps(setup):
    """A broken step (no clip, or no optimizer step) is caught: with a tiny clip the update is
    bounded by lr-sized moves; the weights do change."""
    vocab, tokens, cfg = setup
    model = GPT(cfg, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = make_lm_batch(tokens, np.arange(16), vocab.token_to_id[PAD], "path")
    train_step(model, opt, batch, grad_clip=1e-3)
    moved = torch.sqrt(sum(((model.state_dict()[k] - v) ** 2).sum() for k, v in before.items()))
    assert 0.0 < float(moved) <= 1e-3 * (1 + 1e-4)  # SGD lr 1: the step is the clipped gradient


def test_benchmarks_call_the_one_training_step(setup, monkeypatch):
    from mazesearch.bench import levers, train as bench_train
    from mazesearch.model import train as train_mod

    vocab, tokens, cfg = setup
    calls = []
    real = train_mod.train_step
    monkeypatch.setattr(train_mod, "train_step", lambda *a, **k: calls.append(1) or real(*a, **k))
    pad = vocab.token_to_id[PAD]
    batches = [make_lm_batch(tokens, np.arange(16), pad, "path")]
    step = bench_train._train_step(GPT(cfg, seed=0), batches, False, lr=1e-3, weight_decay=0.1, beta1=0.9,
                                   beta2=0.99, grad_clip=1.0)
    step()
    spec = TrainSpec(batch_size=16, max_steps=10, lr=1e-3, warmup_steps=1)
    order = DataOrder(len(tokens), 16, 0)
    levers._step_fn(GPT(cfg, seed=0), DeviceBatcher(tokens, pad, "path"), order, spec)()
    assert len(calls) == 2


def test_no_second_copy_of_the_step_in_the_library():
    """Gradient clipping and an optimizer step on a model happen in one place (train_step); the
    SAE trainer (its own small model) and the GEMM-floor benchmark (matmuls only) are not steps."""
    sites = []
    for path in sorted(LIBRARY.rglob("*.py")):
        text = path.read_text()
        if re.search(r"clip_grad_norm_\(", text):
            sites.append(path.relative_to(LIBRARY).as_posix())
    assert sites == ["model/train.py"], sites
