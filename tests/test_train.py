"""Training loop: what it feeds, schedule, determinism, resume, checkpoints, snapshots, bf16, the stage.
(Batches, masks and the data order: tests/test_batches.py.)"""

import hashlib
import json
import math
import sys

import numpy as np
import pytest
import torch

from helpers import dfs3_token_sets
from mazesearch.io import InputError
from mazesearch.model import checkpoints
from mazesearch.model import train as train_mod
from mazesearch.model.device import resolve_bf16
from mazesearch.model.gpt import GPT, ModelConfig
from mazesearch.params import ModelSpec, TrainSpec
from mazesearch.model.schedule import lr_at, param_groups
from mazesearch.data.tokens import TokenBatch, Vocab, write_tokens
from mazesearch.model.batches import DataOrder
from mazesearch.model.train import evaluate_teacher_forced, resolve_n_ctx, train

MODEL = ModelSpec(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, seed=0)


def spec(**overrides) -> TrainSpec:
    base = dict(device="cpu", batch_size=16, max_steps=24, lr=3e-3, warmup_steps=4, eval_every=8,
                eval_batches=2, checkpoint_every=5, num_threads=1, seed=0)
    return TrainSpec(**{**base, **overrides})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; also makes float sums reproducible
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(4)


@pytest.fixture(scope="module")
def data(vocab) -> tuple[TokenBatch, TokenBatch]:
    return dfs3_token_sets(vocab)


def weights_sha(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- the loop's input


@pytest.mark.parametrize("window", [1, 4])
def test_training_feeds_the_stored_tokens(data, vocab, monkeypatch, window):
    tokens, val = data
    fed = []

    class Spy(GPT):
        def forward(self, x):
            if self.training:
                fed.append(x.clone())
            return super().forward(x)

    monkeypatch.setattr(train_mod, "GPT", Spy)
    ts = spec(max_steps=3, warmup_steps=1, eval_every=100, length_window=window)
    train(MODEL, ts, tokens, val, vocab, progress=False)
    order = DataOrder(len(tokens), ts.batch_size, ts.seed, tokens.lengths, window)
    assert len(fed) == 3
    for step, x in enumerate(fed):
        rows = order.rows(step)
        assert x.shape[1] == tokens.lengths[rows].max() - 1  # padded to the batch's longest, not n_ctx
        for k, i in enumerate(rows):
            seq = tokens.tokens(i)
            np.testing.assert_array_equal(x[k, : len(seq) - 1].numpy(), seq[:-1])


# ---------------------------------------------------------------------------- schedule and optimizer


def test_lr_schedule_shape():
    lr, warm, steps, frac = 1e-3, 10, 111, 0.1
    curve = [lr_at(s, lr, warm, steps, frac) for s in range(steps)]
    assert curve[0] == pytest.approx(lr / warm)
    assert curve[warm - 1] == pytest.approx(lr)
    assert all(b > a for a, b in zip(curve[:warm], curve[1:warm]))  # rising warmup
    assert curve[warm] == pytest.approx(lr)
    assert all(b <= a for a, b in zip(curve[warm:], curve[warm + 1 :]))  # cosine decay
    assert curve[-1] == pytest.approx(lr * frac)
    mid = warm + (steps - 1 - warm) // 2  # cosine midpoint: halfway between peak and floor
    assert curve[mid] == pytest.approx(lr * frac + 0.5 * (lr - lr * frac) * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(0, lr, 0, 5, 0.0) == pytest.approx(lr)  # no warmup
    with pytest.raises(ValueError, match="step"):
        lr_at(steps, lr, warm, steps, frac)


def test_weight_decay_only_on_matrices():
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32, n_ctx=8, d_vocab=10)
    model = GPT(cfg)
    decay, keep = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in keep["params"]}
    assert decayed.isdisjoint(kept) and decayed | kept == set(names.values())
    assert {"embed.weight", "pos_embed.weight", "ln_final.weight", "blocks.0.attn.q.bias"} <= kept
    assert {"unembed.weight", "blocks.0.attn.q.weight", "blocks.0.mlp.out.weight"} <= decayed
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0


# ---------------------------------------------------------------------------- the loop


def test_same_seed_same_weights_other_seed_differs(data, vocab):
    tokens, val = data
    a = train(MODEL, spec(), tokens, val, vocab, progress=False)
    b = train(MODEL, spec(), tokens, val, vocab, progress=False)
    assert weights_sha(a.model) == weights_sha(b.model)
    assert a.metrics == b.metrics and a.log.curves == b.log.curves
    c = train(MODEL, spec(seed=1), tokens, val, vocab, progress=False)  # other data order
    assert weights_sha(c.model) != weights_sha(a.model)


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("window", [1, 4])
def test_resume_after_kill_equals_uninterrupted(data, vocab, tmp_path, window):
    """Weights, metrics and the dvclive files of a killed-then-resumed run equal an unbroken run's
    (with length bucketing too: the killed run stops inside a window of 4 batches)."""
    tokens, val = data
    ts = lambda: spec(length_window=window)  # noqa: E731
    whole = train(MODEL, ts(), tokens, val, vocab, progress=False, live_dir=tmp_path / "whole")
    whole.log.finish(whole.metrics)

    class Killed(Exception):
        pass

    def kill_at_17(step):
        if step == 17:
            raise Killed

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        train(MODEL, ts(), tokens, val, vocab, checkpoint_dir=ckpt, progress=False, on_step=kill_at_17,
              live_dir=tmp_path / "resumed")
    resumed = train(MODEL, ts(), tokens, val, vocab, checkpoint_dir=ckpt, progress=False,
                    live_dir=tmp_path / "resumed")
    resumed.log.finish(resumed.metrics)
    assert resumed.resumed_from == 15  # last checkpoint (checkpoint_every=5) before the kill
    assert weights_sha(resumed.model) == weights_sha(whole.model)
    assert resumed.metrics == whole.metrics and resumed.log.curves == whole.log.curves
    files = _tree(tmp_path / "whole")
    assert "metrics.json" in files and "plots/metrics/val/exact_path.tsv" in files
    assert _tree(tmp_path / "resumed") == files
    assert not any(b"time" in line for f in files.values() for line in f.splitlines()[:1])  # no timestamps
    again = train(MODEL, ts(), tokens, val, vocab, checkpoint_dir=ckpt, progress=False)
    assert again.resumed_from == ts().max_steps and again.metrics == whole.metrics


def test_checkpoint_of_another_run_is_ignored(data, vocab, tmp_path):
    tokens, val = data
    train(MODEL, spec(max_steps=10), tokens, val, vocab, checkpoint_dir=tmp_path, progress=False)
    changed = spec(max_steps=10, lr=1e-3)
    fresh = train(MODEL, changed, tokens, val, vocab, progress=False)
    other_params = train(MODEL, changed, tokens, val, vocab, checkpoint_dir=tmp_path, progress=False)
    assert other_params.resumed_from == 0
    assert weights_sha(other_params.model) == weights_sha(fresh.model)
    other_data = train(MODEL, changed, tokens.take(np.arange(1, len(tokens))), val, vocab,
                       checkpoint_dir=tmp_path, progress=False)
    assert other_data.resumed_from == 0



def test_damaged_checkpoint_is_an_error_not_a_silent_restart(data, vocab, tmp_path):
    tokens, val = data
    path = tmp_path / checkpoints.CHECKPOINT_FILE
    train(MODEL, spec(max_steps=5), tokens, val, vocab, checkpoint_dir=tmp_path, progress=False)
    good = path.read_bytes()
    for bad in (b"not a checkpoint", good[: len(good) // 2]):  # random bytes; a truncated file
        path.write_bytes(bad)
        with pytest.raises(InputError, match="checkpoint is unreadable.*delete it"):
            train(MODEL, spec(max_steps=5), tokens, val, vocab, checkpoint_dir=tmp_path, progress=False)
    torch.save({"weights": 1}, path)  # readable, but not ours
    with pytest.raises(InputError, match="not a mazesearch training checkpoint"):
        train(MODEL, spec(max_steps=5), tokens, val, vocab, checkpoint_dir=tmp_path, progress=False)


def test_loss_decreases_and_overfits_a_tiny_set(data, vocab):
    tokens, _ = data
    small = tokens.take(np.arange(32))
    ts = spec(batch_size=32, max_steps=150, lr=1e-2, warmup_steps=10, eval_every=150, min_lr_frac=0.1)
    result = train(MODEL, ts, small, small, vocab, progress=False)
    losses = [row["loss"] for row in result.log.curves["train"]]
    assert losses[-1] < 0.25 * losses[0]
    assert result.metrics["val_exact_path"] >= 0.9  # memorized: greedy paths exact on its own data


def test_eval_counts_exact_paths_against_an_oracle(data, vocab):
    tokens, _ = data
    rows = np.arange(10)

    seqs = [tokens.tokens(i).astype(np.int64) for i in rows]

    class Oracle(torch.nn.Module):  # all mass on the true next token, except once in maze 3
        def forward(self, x):  # x: [b, T] in chunks of the batch size; recognise each stored row
            logits = torch.full((*x.shape, len(vocab)), -10.0)
            for k in range(x.shape[0]):
                i = next(i for i, s in enumerate(seqs) if np.array_equal(x[k, : len(s) - 1].numpy(), s[:-1]))
                logits[k, torch.arange(len(seqs[i]) - 1), torch.from_numpy(seqs[i][1:])] = 10.0
                if i == 3:  # first path cell: uniform logits, argmax (id 0) is wrong
                    logits[k, tokens.prompt_len[3] - 1, :] = 0.0
            return logits

    out = evaluate_teacher_forced(Oracle(), tokens, rows, vocab.pad_id, batch_size=4)
    assert out["exact_path"] == pytest.approx(0.9)
    n_path = int((tokens.lengths[rows] - tokens.prompt_len[rows]).sum())
    assert out["path_token_acc"] == pytest.approx((n_path - 1) / n_path)
    # loss: ~0 where the oracle is sure, log(V) at the one uniform position
    assert out["path_loss"] == pytest.approx(math.log(len(vocab)) / n_path, rel=1e-3)
    everything = evaluate_teacher_forced(Oracle(), tokens, rows, vocab.pad_id, batch_size=3, loss_on="all")
    n_all = int((tokens.lengths[rows] - 1).sum())
    assert everything["loss"] == pytest.approx(math.log(len(vocab)) / n_all, rel=1e-3)
    assert everything["exact_path"] == out["exact_path"]


def test_bad_settings_raise_clear_errors(data, vocab):
    tokens, val = data
    longest = int(max(tokens.lengths.max(), val.lengths.max()))
    assert resolve_n_ctx(None, tokens, val) == longest
    assert resolve_n_ctx(longest + 3, tokens, val) == longest + 3
    with pytest.raises(ValueError, match="model.n_ctx=.* smaller than the longest"):
        train(MODEL.model_copy(update={"n_ctx": longest - 1}), spec(), tokens, val, vocab, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train(MODEL, spec(batch_size=len(tokens) + 1), tokens, val, vocab, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="train.device=cuda"):
            train(MODEL, spec(device="cuda"), tokens, val, vocab, progress=False)


# ---------------------------------------------------------------------------- the stage


def test_stage_writes_model_metrics_and_curves(data, vocab, tmp_path, monkeypatch):
    import yaml

    from mazesearch.model.gpt import load_gpt
    from stages import train as stage

    tokens, val = data
    write_tokens(tokens, tmp_path / "train.parquet")
    write_tokens(val, tmp_path / "val.parquet")
    vocab.to_json(tmp_path / "vocab.json")
    params = {
        "datasets": {"train": {"generator": "dfs", "grid_n": 3, "n_mazes": 200, "seed": 1},
                     "val": {"generator": "dfs", "grid_n": 3, "n_mazes": 40, "seed": 2}},
        "tokenizer": {"max_grid_n": 4},
        "model": MODEL.model_dump(),
        "train": spec(max_steps=12).model_dump(),
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["stages.train", "--params", str(tmp_path / "params.yaml"), "--train", str(tmp_path / "train.parquet"),
            "--val", str(tmp_path / "val.parquet"), "--vocab", str(tmp_path / "vocab.json"),
            "--model-dir", str(tmp_path / "models"), "--reports-dir", str(tmp_path / "reports"),
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    monkeypatch.setattr(sys, "argv", argv)
    stage.main()
    outputs = ["models/model.safetensors", "models/model_config.json", "reports/metrics.json",
               "reports/plots/metrics/train/loss.tsv", "reports/plots/metrics/val/exact_path.tsv"]
    first = {name: (tmp_path / name).read_bytes() for name in outputs}
    assert (tmp_path / "models" / "snapshots").is_dir()  # beside the weights (n_snapshots 0: empty)
    assert not any((tmp_path / "models" / "snapshots").iterdir())
    metrics = json.loads(first["reports/metrics.json"])
    assert list(metrics) == ["val_exact_path", "val_loss", "val_path_loss", "step"]
    assert metrics["step"] == 12  # dvclive's: the last logged step
    rows = first["reports/plots/metrics/val/exact_path.tsv"].decode().splitlines()
    assert rows[0] == "step\texact_path" and rows[-1].split("\t")[0] == "12"
    assert not (tmp_path / "ckpt" / "state.pt").exists()  # resume state: killed runs only
    model = load_gpt(tmp_path / "models")
    assert model.cfg.n_ctx == int(max(tokens.lengths.max(), val.lengths.max()))
    assert model.cfg.d_vocab == len(vocab)
    # rerun from scratch (checkpoints removed): byte-identical outputs
    for f in (tmp_path / "ckpt").iterdir():
        f.unlink()
    stage.main()
    assert {name: (tmp_path / name).read_bytes() for name in outputs} == first


def test_cpu_bf16_autocast_trains_close_to_float32(data, vocab):
    """train.bf16 on CPU: autocast really runs (other weights than float32), stays deterministic,
    and lands near the float32 run (bf16 keeps ~3 significant digits per matmul)."""
    tokens, val = data
    short = dict(max_steps=6, warmup_steps=1, eval_every=100)
    fp32 = train(MODEL, spec(**short), tokens, val, vocab, progress=False)
    bf16 = train(MODEL, spec(bf16=True, **short), tokens, val, vocab, progress=False)
    again = train(MODEL, spec(bf16=True, **short), tokens, val, vocab, progress=False)
    assert weights_sha(bf16.model) == weights_sha(again.model)
    assert weights_sha(bf16.model) != weights_sha(fp32.model)
    assert abs(bf16.metrics["val_loss"] - fp32.metrics["val_loss"]) <= 0.02 * fp32.metrics["val_loss"]


@pytest.mark.parametrize("avx512_bf16,amx", [(False, False), (True, False), (False, True)])
def test_bf16_auto_follows_the_cpus_native_bf16(monkeypatch, data, vocab, avx512_bf16, amx):
    """train.bf16: auto autocasts only where the CPU multiplies bf16 natively (torch's checks,
    planted here): an AVX2-only CPU trains in float32, bit for bit the `bf16: false` run."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    native = avx512_bf16 or amx
    assert resolve_bf16("auto", "cpu") is native
    assert resolve_bf16(True, "cpu") is True and resolve_bf16(False, "cpu") is False
    short = dict(max_steps=3, warmup_steps=1, eval_every=100)
    auto = train(MODEL, spec(bf16="auto", **short), tokens := data[0], data[1], vocab, progress=False)
    same = train(MODEL, spec(bf16=native, **short), tokens, data[1], vocab, progress=False)
    assert auto.bf16 is native and weights_sha(auto.model) == weights_sha(same.model)
    with pytest.raises(ValueError):
        spec(bf16="sometimes")


def test_snapshots_at_even_steps_and_a_resumed_run_writes_the_same(data, vocab, tmp_path):
    """train.n_snapshots: weights at evenly spaced steps under the checkpoint dir; the last is the
    final model; a run killed between snapshots and resumed writes byte-identical snapshots."""
    from mazesearch.model.gpt import load_gpt as load_gpt_
    from mazesearch.model.checkpoints import SNAPSHOTS, snapshot_steps

    assert snapshot_steps(24, 3) == [0, 8, 16, 24] and snapshot_steps(10, 4) == [0, 2, 5, 8, 10]
    assert snapshot_steps(3, 6) == [0, 1, 2, 3] and snapshot_steps(24, 0) == []
    tokens, val = data
    whole = train(MODEL, spec(n_snapshots=3), tokens, val, vocab, checkpoint_dir=tmp_path / "a", progress=False)
    snaps = sorted(p.name for p in (tmp_path / "a" / SNAPSHOTS).iterdir())
    assert snaps == ["step_0000000", "step_0000008", "step_0000016", "step_0000024"]
    assert weights_sha(load_gpt_(tmp_path / "a" / SNAPSHOTS / "step_0000000")) == weights_sha(GPT(whole.config, seed=0))
    assert weights_sha(load_gpt_(tmp_path / "a" / SNAPSHOTS / "step_0000024")) == weights_sha(whole.model)
    assert weights_sha(load_gpt_(tmp_path / "a" / SNAPSHOTS / "step_0000008")) != weights_sha(whole.model)

    class Killed(Exception):
        pass

    def kill_at_13(step):
        if step == 13:
            raise Killed

    with pytest.raises(Killed):
        train(MODEL, spec(n_snapshots=3), tokens, val, vocab, checkpoint_dir=tmp_path / "b", progress=False,
              on_step=kill_at_13)
    train(MODEL, spec(n_snapshots=3), tokens, val, vocab, checkpoint_dir=tmp_path / "b", progress=False)
    for name in snaps:
        for f in ("model.safetensors", "model_config.json"):
            assert (tmp_path / "a" / SNAPSHOTS / name / f).read_bytes() == (tmp_path / "b" / SNAPSHOTS / name / f).read_bytes()
