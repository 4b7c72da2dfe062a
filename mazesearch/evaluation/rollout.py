"""Batched greedy decoding: what does the model write after ``<PATH_START>``?

Two decoders share one loop (``_decode``):

* :func:`greedy_rollout` takes any ``logits_fn(tokens [batch, pos]) -> logits [batch, pos, vocab]``
  and re-runs it over the whole right-padded sequence at every step (reference; fake models in
  tests; anything that is not our GPT);
* :func:`greedy_rollout_cached` drives a :class:`mazesearch.model.gpt.GPT` with a key/value cache:
  the prompts are run once (left-padded, with per-row positions and a padding mask) and every
  step then feeds one token per row. Same tokens as the reference (tests/test_rollout.py), many
  times faster on CPU, since a maze prompt is ~100 tokens and a path ~10.

Both sort prompts by length so a batch pads little, stop a row at ``<PATH_END>`` or its cap,
drop finished rows from the batch as they accumulate, and stop when every row is done. Greedy
means ``argmax`` (ties go to the lowest id): same model, same prompts -> same output.

Both take an optional ``intervention`` (:class:`mazesearch.model.intervention.Intervention`: added
vectors, replaced residuals, ablated heads) that every forward pass of the rollout runs under;
its per-row tensors belong to the caller's prompts, its positions are positions in each sequence
(the cached decoder's left padding is accounted for here). This is the one way to roll out under
an edit: steering and faithfulness (mazesearch.interp.intervene) call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mazesearch.model.intervention import Intervention, intervened

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # LongTensor [batch, pos] -> [batch, pos, vocab]
COMPACT_BELOW = 0.75  # drop finished rows once fewer than this fraction of the batch is alive


def is_gpt(model) -> bool:
    """Our GPT (key/value-cached decoding), as opposed to any other ``logits_fn``."""
    return hasattr(model, "cfg") and hasattr(model, "blocks") and hasattr(model, "unembed")


def check_prompts(prompts: Sequence[np.ndarray]) -> np.ndarray:
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    if len(prompts) and lengths.min() < 1:
        raise ValueError(f"prompt {int(np.argmin(lengths))} is empty: every prompt needs at least one token")
    return lengths


def _row_caps(lengths: np.ndarray, max_new_tokens: int, n_ctx: int | None) -> np.ndarray:
    """Tokens each row may generate: max_new_tokens, and the whole sequence must fit n_ctx."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    caps = np.full(len(lengths), int(max_new_tokens), dtype=np.int64)
    if n_ctx is not None:
        caps = np.minimum(caps, n_ctx - lengths)
        if len(caps) and caps.min() < 1:
            i = int(np.argmin(caps))
            raise ValueError(f"prompt {i} has {lengths[i]} tokens: n_ctx={n_ctx} leaves no room to generate")
    return caps


# ---------------------------------------------------------------------------- decoder states


def _check_intervention(model, intervention: Intervention | None, n_prompts: int) -> None:
    if intervention is None:
        return
    if not is_gpt(model):
        raise ValueError("an intervention needs our GPT (its hooks), not a plain logits function")
    intervention.check(model)
    rows = intervention.n_rows()
    if rows is not None and rows != n_prompts:
        raise ValueError(f"the intervention's per-row tensors have {rows} rows, but there are {n_prompts} sequences")


class _Recompute:
    """Right-padded token buffer; every step re-runs ``logits_fn`` over all of it (under the
    intervention, if any: column j is position j)."""

    def __init__(self, logits_fn: LogitsFn, prompts: list[np.ndarray], pad_id: int, width: int, device,
                 rows: np.ndarray | None = None, intervention: Intervention | None = None):
        self.logits_fn, self.intervention = logits_fn, intervention
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)  # caller's prompt indices
        lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
        self.buf = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        for r, p in enumerate(prompts):
            self.buf[r, : len(p)] = torch.from_numpy(np.asarray(p, dtype=np.int64))
        self.buf, self.cur = self.buf.to(device), lengths.to(device)  # cur: tokens so far per row

    def next_logits(self) -> torch.Tensor:  # [rows, vocab]
        width = int(self.cur.max())
        if self.intervention is None:
            logits = self.logits_fn(self.buf[:, :width])  # [rows, width, vocab]
        else:
            with intervened(self.logits_fn, self.intervention, self.rows):
                logits = self.logits_fn(self.buf[:, :width])
        # Causal attention: the pads right of a row's end never reach its last real position.
        return logits[torch.arange(len(self.cur), device=self.cur.device), self.cur - 1]

    def append(self, tokens: torch.Tensor, alive: torch.Tensor) -> None:  # [rows], bool [rows]
        # Finished rows stay put, so the buffer never grows past an alive row's cap (n_ctx).
        rows = torch.nonzero(alive).squeeze(1)
        self.buf[rows, self.cur[rows]] = tokens[rows]
        self.cur = self.cur + alive

    def keep(self, rows: torch.Tensor) -> None:
        self.buf, self.cur = self.buf[rows], self.cur[rows]
        if self.rows is not None:
            self.rows = self.rows[rows.cpu()]


class _KVCache:
    """Our GPT with a key/value cache over left-padded prompts (see module doc).

    Drives ``GPT.forward_cached`` one column at a time; a test checks it agrees with
    ``GPT.forward``. Row r's token in column j sits at position ``j - pad[r]``; pad columns are
    masked out as keys, so real tokens attend exactly what they would unpadded.
    """

    def __init__(self, model, prompts: list[np.ndarray], pad_id: int, width: int, device,
                 teacher: list[np.ndarray] | None = None, rows: np.ndarray | None = None,
                 intervention: Intervention | None = None):
        self.model, cfg = model, model.cfg
        self.intervention = intervention
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)  # caller's prompt indices
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        L = int(lengths.max())
        T = max((len(t) for t in teacher), default=0) if teacher is not None else 0
        width = max(width, L + T)
        tokens = torch.full((len(prompts), L + T), pad_id, dtype=torch.long)
        for r, p in enumerate(prompts):
            tokens[r, L - len(p) : L] = torch.from_numpy(np.asarray(p, dtype=np.int64))
            if T:  # teacher tokens follow the prompt; causal attention keeps them out of its keys
                tokens[r, L : L + len(teacher[r])] = torch.from_numpy(np.asarray(teacher[r], dtype=np.int64))
        self.device = device
        self.pad = torch.from_numpy(L - lengths).to(device)  # [rows] left pad per row
        self.padded = bool(self.pad.max() > 0)
        self.max_pos = cfg.n_ctx - 1 if cfg.positional == "learned" else width - 1
        self.kv = model.new_kv_cache(len(prompts), width)  # per block: keys, values [rows, head, width, d_head]
        # One pass over prompt (+ teacher): logits from the last prompt column on.
        logits = self._forward(tokens.to(device), 0, first_logit_col=L - 1)  # [rows, 1 + T, vocab]
        self._last = logits[:, 0]
        self.teacher_argmax = logits[:, :T].argmax(-1) if T else None  # [rows, T]
        self.col = L  # decoding overwrites the teacher's columns from here on

    def _positions(self, start: int, t: int) -> torch.Tensor:  # [rows, t]: pads negative
        cols = torch.arange(start, start + t, device=self.device)
        return cols[None, :] - self.pad[:, None]

    def _mask(self, start: int, t: int) -> torch.Tensor | None:  # [rows, 1, t, start + t] or None
        if not self.padded:
            return None
        q = torch.arange(start, start + t, device=self.device)[:, None]
        k = torch.arange(start + t, device=self.device)[None, :]
        allowed = (k <= q) & (k >= self.pad[:, None, None])  # [rows, t, keys]
        allowed |= k == q  # pad queries see themselves: no all-masked row (their output is unused)
        return allowed[:, None]

    def _forward(self, tokens: torch.Tensor, start: int, first_logit_col: int | None = None) -> torch.Tensor:
        """Run tokens [rows, t] at columns start..start+t-1 (filling the cache).

        Returns the last column's logits [rows, vocab], or with ``first_logit_col`` the logits of
        every column from there to the end [rows, cols, vocab].
        """
        t = tokens.shape[1]
        positions = self._positions(start, t)
        # Clamped for the model: pad columns, and finished rows still riding along past their cap,
        # get some valid position; their outputs are never used. The intervention sees the true
        # ones (pads negative: never edited).
        args = (tokens, self.kv, start, positions.clamp(0, self.max_pos), self._mask(start, t))
        if self.intervention is None:
            resid = self.model.forward_cached(*args)
        else:
            with intervened(self.model, self.intervention, self.rows, positions):
                resid = self.model.forward_cached(*args)
        if first_logit_col is None:
            return self.model.logits(resid[:, -1])  # [rows, vocab]
        return self.model.logits(resid[:, first_logit_col - start :])  # [rows, cols, vocab]

    def next_logits(self) -> torch.Tensor:
        return self._last

    def append(self, tokens: torch.Tensor, alive: torch.Tensor) -> None:
        self._last = self._forward(tokens[:, None], self.col)
        self.col += 1

    def keep(self, rows: torch.Tensor) -> None:
        self.pad = self.pad[rows]
        if self.rows is not None:
            self.rows = self.rows[rows.cpu()]
        self.teacher_argmax = None  # already collected by the loop
        self.kv = [(k[rows], v[rows]) for k, v in self.kv]
        self._last = self._last[rows]


# ---------------------------------------------------------------------------- the loop


@torch.inference_mode()
def _decode(make_state, prompts, caps: np.ndarray, end_id: int, batch_size: int, device,
            teacher_lengths: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Greedy-decode ``prompts`` in length-sorted chunks through ``make_state(rows, width)``.

    Returns (generated ids per prompt, teacher argmax per prompt or None), in input order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * len(prompts)
    teacher_out = None if teacher_lengths is None else list(out)
    order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: little padding
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        chunk_caps = caps[rows]
        steps = int(chunk_caps.max())
        width = int(lengths[rows].max()) + steps
        state = make_state(rows, width)
        if teacher_out is not None and state.teacher_argmax is not None:  # scored in the prefill
            tf = state.teacher_argmax.cpu().numpy()
            for j, r in enumerate(rows):
                teacher_out[r] = tf[j, : teacher_lengths[r]].astype(np.int32)
        generated = torch.zeros(len(rows), steps, dtype=torch.long, device=device)
        n_gen = torch.zeros(len(rows), dtype=torch.long, device=device)
        cap = torch.from_numpy(chunk_caps).to(device)
        live = torch.arange(len(rows), device=device)  # chunk rows still in the state, in order
        alive = torch.ones(len(rows), dtype=torch.bool, device=device)  # per state row
        for step in range(steps):
            nxt = state.next_logits().argmax(-1)  # [state rows]
            write = live[alive]
            generated[write, step] = nxt[alive]
            n_gen[write] += 1
            alive &= (nxt != end_id) & (n_gen[live] < cap[live])
            n_alive = int(alive.sum())
            if n_alive == 0:
                break
            if n_alive < COMPACT_BELOW * len(alive):
                keep = torch.nonzero(alive).squeeze(1)
                state.keep(keep)
                live, nxt, alive = live[keep], nxt[keep], alive[keep]
            state.append(nxt, alive)
        generated, n_gen = generated.cpu().numpy(), n_gen.cpu().numpy()
        for j, r in enumerate(rows):
            out[r] = generated[j, : n_gen[j]].astype(np.int32)
    return out, teacher_out


def greedy_rollout(
    logits_fn: LogitsFn,
    prompts: Sequence[np.ndarray],
    max_new_tokens: int,
    end_id: int,
    pad_id: int,
    batch_size: int = 256,
    n_ctx: int | None = None,
    device: str | torch.device = "cpu",
    intervention: Intervention | None = None,
) -> list[np.ndarray]:
    """Greedy continuation of every prompt with any ``logits_fn`` (full recompute per step).

    Returns, per prompt in input order, the generated ids ``int32 [k]``: up to and including
    ``end_id``, or ``min(max_new_tokens, n_ctx - len(prompt))`` tokens if it never came.
    ``intervention`` (``logits_fn`` must then be our GPT): active at every step.
    """
    lengths = check_prompts(prompts)
    caps = _row_caps(lengths, max_new_tokens, n_ctx)
    _check_intervention(logits_fn, intervention, len(prompts))
    make = lambda rows, width: _Recompute(logits_fn, [prompts[r] for r in rows], pad_id, width, device,  # noqa: E731
                                          rows, intervention)
    return _decode(make, prompts, caps, end_id, batch_size, device)[0]


def greedy_rollout_cached(
    model,
    prompts: Sequence[np.ndarray],
    max_new_tokens: int,
    end_id: int,
    pad_id: int,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    teacher: Sequence[np.ndarray] | None = None,
    intervention: Intervention | None = None,
    n_ctx: int | None = None,
):
    """:func:`greedy_rollout` for a :class:`mazesearch.model.gpt.GPT`, with a key/value cache.

    Learned positions cap every sequence at ``model.cfg.n_ctx``; rotary models have no position
    table and may run past the length they were trained on, unless ``n_ctx`` caps them too.
    ``intervention``: active in every forward pass (the prompt pass included), at the same
    sequence positions as in :func:`greedy_rollout` (tests/test_intervene.py: equal tokens).

    ``teacher`` (optional, one token array per prompt, e.g. the true path) rides along in the
    prompt pass for free: then returns ``(generated, teacher_argmax)`` where
    ``teacher_argmax[i][k]`` is the model's argmax for ``teacher[i][k]`` having read
    ``prompt + teacher[i][:k]`` (entry 0 equals the first generated token).
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    lengths = check_prompts(prompts)
    if model.cfg.positional == "learned":
        n_ctx = model.cfg.n_ctx if n_ctx is None else min(n_ctx, model.cfg.n_ctx)
    caps = _row_caps(lengths, max_new_tokens, n_ctx)
    _check_intervention(model, intervention, len(prompts))
    teacher_lengths = None
    if teacher is not None:
        if len(teacher) != len(prompts):
            raise ValueError(f"teacher has {len(teacher)} entries, prompts has {len(prompts)}")
        teacher_lengths = np.array([len(t) for t in teacher], dtype=np.int64)
        if n_ctx is not None and len(prompts) and (lengths + teacher_lengths).max() > n_ctx:
            i = int(np.argmax(lengths + teacher_lengths))
            raise ValueError(f"prompt {i} + teacher is {lengths[i] + teacher_lengths[i]} tokens > n_ctx={n_ctx}")
    was_training = model.training
    model.eval()
    try:
        def make(rows, width):
            chunk = [prompts[r] for r in rows]
            return _KVCache(model, chunk, pad_id, width, device, None if teacher is None else [teacher[r] for r in rows],
                            rows, intervention)

        generated, teacher_argmax = _decode(make, prompts, caps, end_id, batch_size, device, teacher_lengths)
    finally:
        model.train(was_training)
    return generated if teacher is None else (generated, teacher_argmax)


@torch.inference_mode()
def teacher_forced_argmax(
    logits_fn: LogitsFn,
    sequences: Sequence[np.ndarray],
    positions: Sequence[np.ndarray],
    pad_id: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> list[np.ndarray]:
    """The model's argmax next token at given positions of given (teacher-forced) sequences.

    ``positions[i]`` (ints in ``0..len(sequences[i])-1``) index sequence i; entry k of the
    result is ``argmax logits[positions[i][k]]``, the model's guess for the token after it.
    """
    if len(positions) != len(sequences):
        raise ValueError(f"positions has {len(positions)} entries, sequences has {len(sequences)}")
    lengths = check_prompts(sequences)
    for i, pos in enumerate(positions):
        pos = np.asarray(pos)
        if pos.size and (pos.min() < 0 or pos.max() >= lengths[i]):
            raise ValueError(f"positions[{i}] must lie in 0..{lengths[i] - 1}")
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * len(sequences)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        buf = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for j, r in enumerate(rows):
            buf[j, : lengths[r]] = torch.from_numpy(np.asarray(sequences[r], dtype=np.int64))
        pred = logits_fn(buf.to(device)).argmax(-1).cpu().numpy()  # [rows, width]
        for j, r in enumerate(rows):
            out[r] = pred[j, np.asarray(positions[r], dtype=np.int64)].astype(np.int32)
    return out
