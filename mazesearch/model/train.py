"""The training loop: next-token prediction on maze token sequences.

The model sees exactly the token sequences stored in ``data/tokens/<name>.parquet``:
:mod:`mazesearch.model.batches` cuts them out of the file's flat array (on the training device),
and validation uses the same batches, so training and validation inputs are identical.

Position ``j`` of the input predicts token ``j + 1``. With ``loss_on="path"`` only the path
targets count: the tokens after ``<PATH_START>`` up to and including ``<PATH_END>`` (token
indices ``prompt_len .. length-1``). Batches are right-padded to their own longest sequence;
with causal attention the padding never influences a real position.

Determinism: the model is built from ``model.seed``, the data order is a pure function of
``(train.seed, step)`` (one permutation per epoch from ``default_rng([seed, epoch])``, sorted by
length inside windows of ``train.length_window`` batches: :class:`~mazesearch.model.batches.DataOrder`), and
the learning rate is a pure function of the step. A checkpoint therefore needs only the model,
the optimizer, the step and the logged rows to resume bit-exactly.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mazesearch.model import distributed
from mazesearch.model.batches import DataOrder, DeviceBatcher, LMBatch, make_lm_batch
from mazesearch.model.checkpoints import (SNAPSHOTS, load_training_state, run_fingerprint, save_training_state,
                                          snapshot_name, snapshot_steps)
from mazesearch.model.runlog import RunLog
from mazesearch.model.device import autocast, resolve_bf16, resolve_device, set_threads
from mazesearch.model.gpt import GPT, ModelConfig, save_checkpoint
from mazesearch.model.objectives import (LookaheadHeads, WithLookahead, lookahead_loss, random_positions,
                                          target_weights)
from mazesearch.params import ModelSpec, TrainSpec
from mazesearch.model.schedule import lr_at, make_optimizer, set_lr
from mazesearch.data.tokens import PAD, TokenBatch, Vocab

TRAIN_LOG_EVERY = 10  # steps per row of the train curve (the row holds the window's mean loss)


def mean_masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over masked positions, without a host sync (no boolean indexing):
    every position is scored and the mask weighs them (a float ``mask`` gives a weighted mean:
    sum w * ce / sum w). logits ``[b, T, V]`` -> scalar."""
    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")  # [b*T]
    weights = mask.flatten().to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp(min=1.0)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over masked positions and their count. logits ``[b, T, V]``."""
    picked = logits[mask].float()  # [n, V]
    return F.cross_entropy(picked, targets[mask], reduction="sum"), int(picked.shape[0])


# ---------------------------------------------------------------------------- model setup


def longest_sequence(*token_sets: TokenBatch) -> int:
    return max(int(t.lengths.max()) for t in token_sets if len(t))


def resolve_n_ctx(n_ctx: int | None, *token_sets: TokenBatch) -> int:
    """``n_ctx`` if given (checked to fit every sequence), else the longest sequence length."""
    needed = longest_sequence(*token_sets)
    if n_ctx is None:
        return needed
    if n_ctx < needed:
        raise ValueError(
            f"model.n_ctx={n_ctx} is smaller than the longest training/validation sequence "
            f"({needed} tokens); raise model.n_ctx or leave it unset to derive it from the data"
        )
    return n_ctx


def check_max_position(ts: TrainSpec, cfg: ModelConfig, longest: int) -> int:
    """The range ``[0, P)`` random position ids are drawn from: ``train.max_position``, default
    ``n_ctx``. It must hold the longest input (``longest - 1`` positions); learned position
    embeddings exist only below ``n_ctx``."""
    p = cfg.n_ctx if ts.max_position is None else ts.max_position
    if ts.position_ids == "random":
        if cfg.positional == "learned" and p > cfg.n_ctx:
            raise ValueError(f"train.max_position={p} exceeds model.n_ctx={cfg.n_ctx}: learned positions end there")
        if p < longest - 1:
            raise ValueError(f"train.max_position={p} is smaller than the longest training input ({longest - 1} "
                             "positions)")
    return p


def model_config(spec: ModelSpec, n_ctx: int, d_vocab: int) -> ModelConfig:
    return ModelConfig(
        d_model=spec.d_model, n_layers=spec.n_layers, n_heads=spec.n_heads, d_head=spec.d_head,
        d_mlp=spec.d_mlp, act_fn=spec.act_fn, normalization=spec.normalization,
        positional=spec.positional, n_ctx=n_ctx, d_vocab=d_vocab,
    )


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: LMBatch, grad_clip: float,
    bf16: bool = False, dist: distributed.Dist | None = None, lookahead_weight: float = 0.0,
) -> torch.Tensor:
    """One optimisation step: forward (under :func:`autocast`), masked mean cross-entropy over
    ``batch.loss_mask`` (weighted by ``batch.loss_weight`` when the batch has one), plus
    ``lookahead_weight`` x the lookahead heads' loss when ``model`` has them
    (mazesearch.model.objectives.WithLookahead), backward, gradient clipping at ``grad_clip``,
    optimizer step.

    The one training step of the project: stage train (single process and under torchrun, where
    ``model`` is the DistributedDataParallel wrapper and the loss is this rank's share of the
    global mean) and the benchmarks call it. Returns the loss, detached and still on the device:
    nothing here waits for the device.
    """
    device = batch.inputs.device
    with autocast(device, bf16):
        out = model(batch.inputs) if batch.positions is None else model(batch.inputs, batch.positions)
    logits, ahead = out if isinstance(out, tuple) else (out, None)  # [b, T-1, V], k x [b, T-1, V]
    weights = batch.loss_mask if batch.loss_weight is None else batch.loss_weight
    if dist is None:
        loss = mean_masked_cross_entropy(logits, batch.targets, weights)
    else:
        loss = distributed.shard_loss(logits, batch.targets, weights, dist.world)
    if ahead is not None:
        loss = loss + lookahead_weight * lookahead_loss(ahead, batch.targets, batch.path_mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_teacher_forced(
    model: nn.Module, tokens: TokenBatch, rows: np.ndarray, pad_id: int, batch_size: int,
    loss_on: Literal["path", "all"] = "path", device: torch.device | str = "cpu", bf16: bool = False,
    random_positions_from: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Loss over the ``loss_on`` targets (``loss``) and over path targets (``path_loss``),
    exact-path rate and path-token accuracy.

    A maze counts as exact iff the argmax is right at every path target; that is the same as
    greedy decoding reproducing the stored path and ``<PATH_END>`` exactly. Positions are
    0..T-1, or with ``random_positions_from=(seed, max_position)`` the training scheme's random
    sorted ids (:func:`~mazesearch.model.objectives.random_positions`, one draw per batch).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(("loss", "loss_n", "path_loss", "exact", "tok_right", "tok_n"), 0.0)
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        batch = make_lm_batch(tokens, rows[start : start + batch_size], pad_id, loss_on, device)
        positions = None
        if random_positions_from is not None:
            seed, max_position = random_positions_from
            b, width = batch.inputs.shape
            positions = torch.from_numpy(random_positions(seed, start, b, width, max_position)).to(device)
        with autocast(device, bf16):
            logits = model(batch.inputs) if positions is None else model(batch.inputs, positions)  # [b, T-1, V]
        loss, n = masked_cross_entropy(logits, batch.targets, batch.loss_mask)
        path_loss, n_path = masked_cross_entropy(logits, batch.targets, batch.path_mask)
        right = logits.argmax(-1) == batch.targets  # [b, T-1]
        sums["loss"] += float(loss)
        sums["loss_n"] += n
        sums["path_loss"] += float(path_loss)
        sums["tok_n"] += n_path
        sums["exact"] += int((right | ~batch.path_mask).all(dim=1).sum())
        sums["tok_right"] += int((right & batch.path_mask).sum())
    model.train(was_training)
    return {
        "loss": sums["loss"] / max(sums["loss_n"], 1),
        "path_loss": sums["path_loss"] / max(sums["tok_n"], 1),
        "exact_path": sums["exact"] / max(len(rows), 1),
        "path_token_acc": sums["tok_right"] / max(sums["tok_n"], 1),
    }


# ---------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class TrainResult:
    model: nn.Module
    config: ModelConfig
    log: RunLog  # curves "train" and "val"
    metrics: dict[str, float | int]  # final, deterministic
    resumed_from: int  # step the run resumed at (0 = fresh start)
    wall_s: float  # this process's time in train() (not a metric: it varies run to run)
    tokens_per_s: float  # training-loop throughput in this process (0.0 if no step ran)
    device: torch.device  # where it ran (train.device resolved)
    padding_frac: float = 0.0  # share of computed input positions that were padding (this process)
    bf16: bool = False  # whether bf16 autocast ran (train.bf16 resolved)


def train(
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    train_tokens: TokenBatch,
    val_tokens: TokenBatch,
    vocab: Vocab,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    live_dir: str | Path | None = None,
) -> TrainResult:
    """Train a fresh GPT (or resume the matching checkpoint) and evaluate it on all of val.

    ``on_step(step)`` is called after every completed step (after any checkpoint is saved).
    With ``live_dir`` the curves are written there by dvclive as training goes (runlog.py);
    the caller closes the log with ``result.log.finish(result.metrics)``.
    """
    ts = train_spec
    t0 = time.perf_counter()
    set_threads(ts.num_threads)
    dist = distributed.from_env()  # None unless started by torchrun with several processes
    device = distributed.device_for(dist, resolve_device(ts.device, "train.device"))
    main = dist is None or dist.is_main  # only rank 0 logs, evaluates, snapshots and checkpoints
    for name, tokens in (("training", train_tokens), ("validation", val_tokens)):
        if len(tokens) == 0:
            raise ValueError(f"the {name} token set is empty")
    pad_id = vocab.token_to_id[PAD]
    cfg = model_config(model_spec, resolve_n_ctx(model_spec.n_ctx, train_tokens, val_tokens), len(vocab))
    order = DataOrder(len(train_tokens), ts.batch_size, ts.seed, train_tokens.lengths, ts.length_window,
                      sizes=train_tokens.prompt_len, curriculum_epochs=ts.curriculum_epochs)
    distributed.check_batch(ts.batch_size, dist)
    max_position = check_max_position(ts, cfg, longest_sequence(train_tokens))
    model = GPT(cfg, seed=model_spec.seed).to(device)
    # the lookahead heads train beside the GPT and are dropped at the end: the result is the GPT
    trainable = model if not ts.lookahead else WithLookahead(
        model, LookaheadHeads(cfg.d_model, cfg.d_vocab, ts.lookahead, model_spec.seed).to(device))
    optimizer = make_optimizer(trainable, ts.lr, ts.weight_decay, ts.beta1, ts.beta2, fused_ok=device.type == "cuda")
    fingerprint = run_fingerprint(model_spec, ts, cfg, device, train_tokens, val_tokens, vocab)
    bf16 = resolve_bf16(ts.bf16, device)
    if main and ts.bf16 == "auto":
        print(f"train: bf16 auto -> {'bf16 autocast' if bf16 else 'float32'} on {device}")

    log = RunLog(live_dir if main else None)
    step, tokens_seen, window = 0, 0, [0.0, 0]  # window: summed loss and steps since last row
    state = load_training_state(checkpoint_dir, fingerprint)
    snapshot_dir = None if checkpoint_dir is None or not main else Path(checkpoint_dir) / SNAPSHOTS
    if state is None and snapshot_dir is not None:
        shutil.rmtree(snapshot_dir, ignore_errors=True)  # a fresh run: no snapshot of another run
    snap_at = set(snapshot_steps(ts.max_steps, ts.n_snapshots)) if snapshot_dir is not None else set()
    if state is not None:
        trainable.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log.load_state_dict(state["log"])
        step, tokens_seen, window = state["step"], state["tokens_seen"], list(state["window"])
        if main:
            print(f"train: resuming from step {step} ({checkpoint_dir})")
    resumed_from, tokens_at_start = step, tokens_seen
    if step == 0 and 0 in snap_at:
        save_checkpoint(model, snapshot_dir / snapshot_name(0))

    def checkpoint() -> None:
        save_training_state(checkpoint_dir, {
            "fingerprint": fingerprint, "step": step, "tokens_seen": tokens_seen,
            "window": [float(loss_window), window[1]],
            "model": trainable.state_dict(), "optimizer": optimizer.state_dict(), "log": log.state_dict(),
            "data_order": {"seed": ts.seed, "batch_size": ts.batch_size, "rng": "default_rng([seed, epoch])"},
        })

    quick_val = np.arange(min(len(val_tokens), ts.eval_batches * ts.batch_size))
    batcher = DeviceBatcher(train_tokens, pad_id, ts.loss_on, device,
                            target_weight=target_weights(train_tokens, vocab, ts.decision_weight))
    loss_window = torch.tensor(window[0], dtype=torch.float64, device=device)  # window[0] on the device
    computed = real = 0  # input positions computed / real (not padding), for padding_frac
    bar = _progress_bar(ts.max_steps, step, progress and main)
    train_model = distributed.wrap(trainable, dist, device)  # DistributedDataParallel under torchrun
    trainable.train()
    t_loop = t_window = time.perf_counter()
    tok_window = 0
    while step < ts.max_steps:
        set_lr(optimizer, lr_at(step, ts.lr, ts.warmup_steps, ts.max_steps, ts.min_lr_frac))
        rows = order.rows(step)  # the global batch; each process takes its slice
        batch = batcher.batch(rows if dist is None else rows[dist.rank :: dist.world])
        if ts.position_ids == "random":  # drawn for the global batch: each process takes its rows
            width = int(batcher.lengths[rows].max()) - 1
            pos = random_positions(ts.seed, step, len(rows), width, max_position)
            pos = pos if dist is None else pos[dist.rank :: dist.world]
            batch.positions = torch.from_numpy(np.ascontiguousarray(pos[:, : batch.inputs.shape[1]])).to(device)
        loss = train_step(train_model, optimizer, batch, ts.grad_clip, bf16, dist, ts.lookahead_weight)
        step += 1
        n_tokens = batch.n_tokens if dist is None else int(batcher.lengths[rows].sum())  # the global batch's
        tokens_seen += n_tokens
        tok_window += n_tokens
        computed += batch.inputs.numel()
        real += batch.n_tokens - batch.inputs.shape[0]  # inputs are each sequence but its last token
        loss_window += loss.double()  # summed on the device: no host sync per step
        window[1] += 1

        if step % TRAIN_LOG_EVERY == 0 or step == ts.max_steps:
            lr_used = optimizer.param_groups[0]["lr"]
            window[0] = float(distributed.global_mean(loss_window, dist))  # the one sync per TRAIN_LOG_EVERY steps
            log.log("train", step, loss=window[0] / window[1], lr=lr_used, tokens_seen=tokens_seen)
            elapsed = time.perf_counter() - t_window
            if bar is not None:
                bar.set_postfix(loss=f"{window[0] / window[1]:.4f}", tok_s=f"{tok_window / max(elapsed, 1e-9):.0f}")
            window, t_window, tok_window = [0.0, 0], time.perf_counter(), 0
            loss_window.zero_()
        if main and (step % ts.eval_every == 0 or step == ts.max_steps):
            val = evaluate_teacher_forced(model, val_tokens, quick_val, pad_id, ts.batch_size, ts.loss_on, device, bf16)
            log.log("val", step, loss=val["loss"], path_loss=val["path_loss"],
                    exact_path=val["exact_path"], path_token_acc=val["path_token_acc"])
        if step in snap_at:  # before the resume state, so a resumed run never misses one
            save_checkpoint(model, snapshot_dir / snapshot_name(step))
        if checkpoint_dir is not None and main and (step % ts.checkpoint_every == 0 or step == ts.max_steps):
            checkpoint()
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(step)
    if bar is not None:
        bar.close()
    loop_s = time.perf_counter() - t_loop
    throughput = (tokens_seen - tokens_at_start) / loop_s if step > resumed_from else 0.0
    padding = 1.0 - real / computed if computed else 0.0
    if not main:  # the other processes only computed: rank 0 evaluates and writes
        return TrainResult(model, cfg, log, {}, resumed_from, time.perf_counter() - t0, throughput, device, padding, bf16)

    final = evaluate_teacher_forced(
        model, val_tokens, np.arange(len(val_tokens)), pad_id, ts.batch_size, ts.loss_on, device, bf16
    )
    metrics = {
        "train_loss": log.last("train")["loss"],
        "val_loss": final["loss"],
        "val_path_loss": final["path_loss"],
        "val_exact_path": final["exact_path"],
        "val_path_token_acc": final["path_token_acc"],
        "steps": step,
        "tokens_seen": tokens_seen,
    }
    return TrainResult(model, cfg, log, metrics, resumed_from, time.perf_counter() - t0, throughput, device, padding, bf16)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: drawn on a terminal only, so `dvc exp run` logs are not flooded with bars
    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, disable=None)
