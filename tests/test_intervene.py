"""Interventions on the plain GPT (mazesearch.interp.intervene): no-op interventions change nothing
(logits bit for bit, rollouts token for token against both rollout decoders); every kind of edit
agrees with the same edit made through TransformerLens hooks on the bridge; per-row vectors follow
their rows through sorting, chunking and compaction; a planted unembedding direction steers the
first token while random vectors of its norm do not; head means agree with run_with_cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import REL_TOL, VOCAB, one_torch_thread, rel_err, tiny
from mazesearch.data.dataset import build_mazes
from mazesearch.data.tokens import TokenizerOptions, encode
from mazesearch.evaluation.rollout import greedy_rollout, greedy_rollout_cached
from mazesearch.interp.intervene import (
    Intervention, head_means, intervened, logits_under, rollout_under, rollout_under_cached,
    teacher_forced_logits_under,
)
from mazesearch.model.gpt import GPT

N_LAYERS, N_HEADS, D_HEAD, D_MODEL = 3, 4, 8, 32
END = VOCAB.token_to_id["<PATH_END>"]


@pytest.fixture(scope="module")
def mazes():
    """12 encoded 4x4 percolation mazes: ragged lengths (65..95 tokens)."""
    batch, _ = build_mazes(generator="percolation", grid_n=4, n_mazes=12, seed=2, p=0.7)
    return encode(batch, VOCAB, TokenizerOptions(seed=2))


@pytest.fixture(scope="module", autouse=True)
def one_thread(mazes):  # after the mazes are built: see helpers.one_torch_thread
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tokens(mazes) -> torch.Tensor:  # long [12, 95], right-padded
    return torch.from_numpy(mazes.padded(VOCAB.pad_id).astype(np.int64))


@pytest.fixture(scope="module")
def prompts(mazes) -> list[np.ndarray]:
    """Maze prompts and shorter prefixes of them: 16 prompts of many lengths, unsorted."""
    rng = np.random.default_rng(0)
    full = [mazes.prompt(i) for i in range(len(mazes))]
    return full[:8] + [full[i][: int(rng.integers(10, 60))] for i in range(8, 12)] + \
        [full[i][: int(rng.integers(10, 60))] for i in range(4)]


def random_gpt(positional: str, seed: int = 0) -> GPT:
    model = GPT(tiny(positional=positional, n_layers=N_LAYERS), seed=seed)
    with torch.no_grad():  # larger weights: argmax moves around more, so outputs differ per row
        for p in model.parameters():
            p.mul_(1.5)
    return model.eval()


@pytest.fixture(scope="module", params=["rotary", "learned"])
def model(request) -> GPT:
    return random_gpt(request.param)


@pytest.fixture(scope="module")
def bridge(model):
    from mazesearch.interp.bridge import to_bridge

    return to_bridge(model)


def end_token(model, prompts) -> int:
    """A token the model does write, at varying steps: rows stop at different times."""
    probe = greedy_rollout_cached(model, prompts, 8, end_id=-1, pad_id=VOCAB.pad_id, batch_size=64)
    return int(np.bincount(np.concatenate([g[2:] for g in probe]), minlength=len(VOCAB)).argmax())


def as_lists(arrays) -> list[list[int]]:
    return [a.tolist() for a in arrays]


# ---------------------------------------------------------------------------- no-op interventions


def test_empty_intervention_changes_no_logit(model, tokens):
    with torch.inference_mode():
        clean = model(tokens)
        assert torch.equal(logits_under(model, tokens, Intervention()), clean)
        zeros = Intervention(add={1: torch.zeros(len(tokens), D_MODEL), 2: torch.zeros(D_MODEL)},
                             replace={0: lambda r: r}, from_pos=torch.zeros(len(tokens), dtype=torch.long))
        assert torch.equal(logits_under(model, tokens, zeros), clean)


def test_empty_intervention_rollout_equals_both_decoders(model, prompts):
    end_id = end_token(model, prompts)
    args = dict(end_id=end_id, pad_id=VOCAB.pad_id, batch_size=5)
    got = rollout_under(model, prompts, Intervention(), max_new_tokens=12, **args)
    assert as_lists(got) == as_lists(greedy_rollout_cached(model, prompts, 12, **args))
    assert as_lists(got) == as_lists(greedy_rollout(model, prompts, 12, n_ctx=model.cfg.n_ctx, **args))
    assert as_lists(rollout_under_cached(model, prompts, Intervention(), max_new_tokens=12, **args)) == as_lists(got)
    assert all(g.dtype == np.int32 for g in got)
    assert len({len(g) for g in got}) > 2  # rows stopped at different steps (compaction exercised)
    assert any(g[-1] == end_id for g in got) and any(g[-1] != end_id for g in got)  # stopped and capped


# ---------------------------------------------------------------------------- the bridge as oracle


def _heads_to_mean(means: torch.Tensor, ablate: torch.Tensor, layer: int):
    def hook(z, hook):  # [batch, pos, head, d_head]
        z = z.clone()
        for h in torch.nonzero(ablate[layer]).squeeze(1).tolist():
            z[:, :, h] = means[layer, h]
        return z
    return hook


def _cases(B: int):
    """name -> (Intervention, TransformerLens fwd_hooks doing the same edit)."""
    g = torch.Generator().manual_seed(5)
    v = torch.randn(B, D_MODEL, generator=g) * 3  # per row
    w = torch.randn(D_MODEL, generator=g) * 3  # shared
    fn = lambda r: 0.5 * r + torch.tanh(r)  # noqa: E731  a position-wise nonlinear map
    ablate = torch.zeros(N_LAYERS, N_HEADS, dtype=torch.bool)
    ablate[0, 1] = ablate[1, 0] = ablate[1, 3] = ablate[2, 2] = True
    means = torch.randn(N_LAYERS, N_HEADS, D_HEAD, generator=g)
    starts = torch.randint(0, 70, (B,), generator=g)

    def rows_from(x, add):  # x [batch, pos, d_model]; add [batch, d_model]
        x = x.clone()
        for i, s in enumerate(starts.tolist()):
            x[i, s:] = x[i, s:] + add[i]
        return x

    def rows_window(x, add):  # add only at starts // 3 <= p < starts
        x = x.clone()
        for i, s in enumerate(starts.tolist()):
            x[i, s // 3 : s] = x[i, s // 3 : s] + add[i]
        return x

    def tail_replaced(x, s):
        x = x.clone()
        x[:, s:] = fn(x[:, s:])
        return x

    z_hooks = [(f"blocks.{l}.attn.hook_z", _heads_to_mean(means, ablate, l)) for l in range(N_LAYERS)]
    return {
        "add_per_row": (Intervention(add={1: v}), [("blocks.1.hook_resid_post", lambda x, hook: x + v[:, None, :])]),
        "add_shared_two_layers": (Intervention(add={0: w, 2: v}),
                                  [("blocks.0.hook_resid_post", lambda x, hook: x + w),
                                   ("blocks.2.hook_resid_post", lambda x, hook: x + v[:, None, :])]),
        "replace": (Intervention(replace={1: fn}), [("blocks.1.hook_resid_post", lambda x, hook: fn(x))]),
        "ablate": (Intervention(ablate=ablate, head_means=means), z_hooks),
        "from_pos_int": (Intervention(add={1: v}, replace={0: fn}, from_pos=40),
                         [("blocks.0.hook_resid_post", lambda x, hook: tail_replaced(x, 40)),
                          ("blocks.1.hook_resid_post",
                           lambda x, hook: torch.cat([x[:, :40], x[:, 40:] + v[:, None, :]], 1))]),
        "from_pos_per_row": (Intervention(add={2: v}, from_pos=starts),
                             [("blocks.2.hook_resid_post", lambda x, hook: rows_from(x, v))]),
        "window_per_row": (Intervention(add={1: v}, from_pos=starts // 3, to_pos=starts),
                           [("blocks.1.hook_resid_post", lambda x, hook: rows_window(x, v))]),
        "add_pre_embeddings": (Intervention(add_pre={0: v}),
                               [("blocks.0.hook_resid_pre", lambda x, hook: x + v[:, None, :])]),
        "add_pre_window_after_add": (Intervention(add={1: w}, add_pre={2: v}, from_pos=starts // 3, to_pos=starts),
                                     [("blocks.1.hook_resid_post", lambda x, hook: rows_window(x, w[None, :].expand_as(v))),
                                      ("blocks.2.hook_resid_pre", lambda x, hook: rows_window(x, v))]),
        "replace_then_add_and_ablate": (Intervention(add={1: v}, replace={1: fn}, ablate=ablate, head_means=means),
                                        z_hooks + [("blocks.1.hook_resid_post",
                                                    lambda x, hook: fn(x) + v[:, None, :])]),
    }


@pytest.mark.parametrize("case", list(_cases(1)))
def test_logits_under_equal_bridge_hooks(case, model, bridge, tokens):
    """Raw logits (the bridge is not in compatibility mode; no constant shift to remove)."""
    iv, fwd_hooks = _cases(len(tokens))[case]
    with torch.inference_mode():
        ours = logits_under(model, tokens, iv)
        theirs = bridge.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
        clean = bridge(tokens)
    assert rel_err(ours, theirs) <= REL_TOL
    assert rel_err(clean, theirs) > 100 * REL_TOL  # the edit matters: the comparison is not vacuous


def test_rows_picks_per_row_tensors(model, bridge, tokens):
    """``rows`` applies rows of per-row tensors to a sub-batch: tokens[rows] with v[rows]."""
    iv, fwd_hooks = _cases(len(tokens))["from_pos_per_row"]
    rows = np.array([7, 2, 11, 0])
    with torch.inference_mode():
        whole = bridge.run_with_hooks(tokens, fwd_hooks=fwd_hooks)
        part = logits_under(model, tokens[rows], iv, rows=rows)
    assert rel_err(part, whole[rows]) <= REL_TOL


# ---------------------------------------------------------------------------- per-row vectors in batches


def _per_row(n, scale=2.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D_MODEL, generator=g) * scale


def test_per_row_vectors_follow_their_prompts(model, prompts):
    end_id = end_token(model, prompts)
    n = len(prompts)
    v = _per_row(n)
    starts = torch.tensor([len(p) - 3 for p in prompts])  # steer only the last prompt tokens onwards
    args = dict(max_new_tokens=10, end_id=end_id, pad_id=VOCAB.pad_id)
    for iv_of in (lambda v, s: Intervention(add={1: v}), lambda v, s: Intervention(add={2: v}, from_pos=s)):
        got = rollout_under(model, prompts, iv_of(v, starts), batch_size=3, **args)
        alone = [rollout_under(model, [p], iv_of(v[i : i + 1], starts[i : i + 1]), batch_size=1, **args)[0]
                 for i, p in enumerate(prompts)]
        assert as_lists(got) == as_lists(alone)
        plain = rollout_under(model, prompts, Intervention(), batch_size=3, **args)
        assert sum(a != b for a, b in zip(as_lists(got), as_lists(plain))) >= n // 2  # steering matters
        perm = torch.roll(torch.arange(n), 1)
        swapped = rollout_under(model, prompts, iv_of(v[perm], starts), batch_size=3, **args)
        assert sum(a != b for a, b in zip(as_lists(got), as_lists(swapped))) >= n // 2  # rows' own vectors
        assert len({len(g) for g in got}) > 2  # rows stop at different steps: compaction moves rows


@pytest.mark.parametrize("case", list(_cases(1)))
def test_cached_rollout_equals_the_recompute_rollout(case, model, prompts):
    """Every kind of edit (per-row vectors, per-row from_pos, replace, ablation) through the
    key/value-cached decoder gives the recompute decoder's tokens, with chunks and compaction."""
    iv, _ = _cases(len(prompts))[case]
    args = dict(max_new_tokens=10, end_id=end_token(model, prompts), pad_id=VOCAB.pad_id, batch_size=5)
    want = rollout_under(model, prompts, iv, **args)
    assert as_lists(rollout_under_cached(model, prompts, iv, **args)) == as_lists(want)
    assert as_lists(want) != as_lists(rollout_under(model, prompts, Intervention(), **args))  # the edit matters


def test_teacher_forced_logits_follow_their_rows(model, mazes):
    seqs = [mazes.tokens(i) for i in range(len(mazes))]
    rng = np.random.default_rng(3)
    positions = [np.sort(rng.choice(len(s), size=5, replace=False)) for s in seqs]
    v = _per_row(len(seqs))
    iv = Intervention(add={0: v}, from_pos=torch.tensor([int(p[2]) for p in positions]))
    got = teacher_forced_logits_under(model, mazes, positions, iv, VOCAB.pad_id, batch_size=5)
    with torch.inference_mode():
        for i, s in enumerate(seqs):
            one = Intervention(add={0: v[i : i + 1]}, from_pos=iv.from_pos[i : i + 1])
            want = logits_under(model, torch.from_numpy(s.astype(np.int64))[None], one)[0, positions[i]]
            assert got[i].dtype == np.float32 and got[i].shape == (5, len(VOCAB))
            assert rel_err(got[i], want) <= REL_TOL
            clean = model(torch.from_numpy(s.astype(np.int64))[None])[0, positions[i]]
            assert rel_err(got[i][3:], clean[3:]) > 100 * REL_TOL  # steered from position[2] on
            assert rel_err(got[i][:2], clean[:2]) <= REL_TOL  # and not before it


# ---------------------------------------------------------------------------- planted control


def test_planted_unembedding_direction_steers_the_first_token(model, prompts):
    with torch.inference_mode():
        first = [g[0] for g in rollout_under(model, prompts, Intervention(), max_new_tokens=1, end_id=END,
                                             pad_id=VOCAB.pad_id)]
    tok = next(t for t in range(len(VOCAB)) if t not in first and t != END)  # never chosen unsteered
    direction = model.unembed.weight[tok].detach()
    planted = 50 * direction / direction.norm()  # [d_model]
    args = dict(max_new_tokens=2, end_id=END, pad_id=VOCAB.pad_id, batch_size=6)
    steered = rollout_under(model, prompts, Intervention(add={N_LAYERS - 1: planted}), **args)
    assert all(g[0] == tok for g in steered)
    gen = torch.Generator().manual_seed(0)
    hits = 0
    for _ in range(4):  # random directions of the same norm, one per row
        rand = torch.randn(len(prompts), D_MODEL, generator=gen)
        rand = 50 * rand / rand.norm(dim=1, keepdim=True)
        out = rollout_under(model, prompts, Intervention(add={N_LAYERS - 1: rand}), **args)
        hits += sum(g[0] == tok for g in out)
    assert hits <= 0.1 * 4 * len(prompts)  # 0 of 64 in practice


# ---------------------------------------------------------------------------- head means


def test_head_means_equal_run_with_cache(model, bridge, mazes, tokens):
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_z"))
    lengths = torch.from_numpy(mazes.lengths)
    real = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).float()[..., None, None]  # [B, pos, 1, 1]
    want = torch.stack([(cache[f"blocks.{l}.attn.hook_z"] * real).sum((0, 1)) / real.sum()
                        for l in range(N_LAYERS)])  # [layer, head, d_head]
    got = head_means(model, mazes, VOCAB.pad_id, batch_size=5)
    assert got.shape == (N_LAYERS, N_HEADS, D_HEAD) and got.dtype == torch.float32
    assert rel_err(got, want) <= REL_TOL
    as_list = head_means(model, [mazes.tokens(i) for i in range(len(mazes))], VOCAB.pad_id)
    assert rel_err(as_list, want) <= REL_TOL
    with_pads = torch.stack([cache[f"blocks.{l}.attn.hook_z"].mean((0, 1)) for l in range(N_LAYERS)])
    assert rel_err(with_pads, want) > 100 * REL_TOL  # pads would change the answer


# ---------------------------------------------------------------------------- hooks and checks


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_removed_on_exit_and_on_error(model, tokens):
    ablate = torch.ones(N_LAYERS, N_HEADS, dtype=torch.bool)
    iv = Intervention(add={0: torch.ones(D_MODEL)}, replace={2: torch.tanh}, ablate=ablate,
                      head_means=torch.zeros(N_LAYERS, N_HEADS, D_HEAD))
    with torch.inference_mode():
        clean = model(tokens)
        with intervened(model, iv):
            assert _n_hooks(model) == 2 + N_LAYERS
            assert not torch.equal(model(tokens), clean)
        assert _n_hooks(model) == 0 and torch.equal(model(tokens), clean)
        with pytest.raises(RuntimeError, match="boom"):
            with intervened(model, iv):
                raise RuntimeError("boom")
        assert _n_hooks(model) == 0 and torch.equal(model(tokens), clean)
        with pytest.raises(RuntimeError):  # a failing replace fn inside the forward pass
            logits_under(model, tokens, Intervention(replace={1: lambda r: r[:, :1, :3]}))
        assert _n_hooks(model) == 0 and torch.equal(model(tokens), clean)
    head_means(model, [t.numpy() for t in tokens[:3]], VOCAB.pad_id)
    assert _n_hooks(model) == 0


@pytest.mark.parametrize("iv, match", [
    (Intervention(add={3: torch.zeros(D_MODEL)}), "layers"),
    (Intervention(add={0: torch.zeros(D_MODEL + 1)}), "d_model"),
    (Intervention(ablate=torch.ones(N_LAYERS, N_HEADS, dtype=torch.bool)), "head_means"),
    (Intervention(ablate=torch.ones(N_LAYERS, N_HEADS)), "bool"),
    (Intervention(add={0: torch.zeros(5, D_MODEL)}, from_pos=torch.zeros(4, dtype=torch.long)), "disagree"),
], ids=["layer", "d_model", "no_means", "not_bool", "rows_disagree"])
def test_bad_interventions_are_rejected(iv, match, model, tokens):
    with pytest.raises(ValueError, match=match):
        logits_under(model, tokens, iv)
    assert _n_hooks(model) == 0


def test_per_row_count_must_match_the_batch(model, tokens):
    with pytest.raises(ValueError, match="rows"):
        logits_under(model, tokens[:5], Intervention(add={1: torch.zeros(len(tokens), D_MODEL)}))
    assert _n_hooks(model) == 0


def test_per_row_count_must_match_the_prompts(model, prompts):
    with pytest.raises(ValueError, match="rows"):
        rollout_under(model, prompts, Intervention(add={0: torch.zeros(len(prompts) - 1, D_MODEL)}),
                      max_new_tokens=2, end_id=END, pad_id=VOCAB.pad_id)
