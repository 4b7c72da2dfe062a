"""Where a CPU training step goes, and what each speed lever is worth, in one run.

``python -m mazesearch.bench levers [--quick] [--threads N]`` uses the default profile's model
shape and training dataset (params.yaml) and measures, on this machine, in one process:

* ``padding``: the training loop's step (:mod:`mazesearch.model.train`) for a fixed number of
  steps, on the default recipe and on a mixed 3x3/4x4/5x5 set, in configurations: ``plain``
  (``length_window`` 1, the reference), ``buckets`` (``length_window`` 16),
  ``buckets_bf16`` (plus CPU bf16 autocast): *real* tokens/s (padding excluded, medians of
  interleaved repeats) and the padding share of computed positions;
* ``profile``: torch.profiler over steps of the loop body, split into GEMMs, attention, norms,
  loss, optimizer, other ops and Python/framework time (wall minus the ops' own time);
* ``gemm_bound``: only the linear layers' matmuls (forward and both backward products) for the
  same tokens: real tokens/s if a step were nothing but its GEMMs (float32, and bf16);
* ``compile``: ``torch.compile`` (inductor) vs eager on the same batch: tokens/s of a training
  step and the logits' max relative difference.

Writes ``reports/bench/levers.json``; docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mazesearch.bench import machine_info, profile_specs, write_report

MIXED_SIZES = (3, 4, 5)
# name -> (length_window, bf16 autocast): "plain" (shuffled batches) is the reference. The loop
# before issue 18 ("today" in docs/performance.md's table) was retired with it in issue 26.
DEFAULT_CONFIGS = {"plain": (1, False), "buckets": (16, False), "buckets_bf16": (16, True)}
MIXED_CONFIGS = {"plain": (1, False), "buckets": (16, False)}
CATEGORIES = {  # first match wins: substrings of profiler op names (forward and backward)
    "gemm": ("addmm", "aten::mm", "aten::bmm", "aten::linear", "matmul"),
    "attention": ("scaled_dot_product", "attention"),
    "norm": ("layer_norm", "rms_norm"),
    "loss": ("cross_entropy", "log_softmax", "nll_loss"),
    "optimizer": ("_foreach", "adamw", "clip_grad", "aten::norm"),
}


def _tokens(spec: dict, n: int, vocab, opts):
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.tokens import encode

    return encode(build_mazes(n_mazes=n, **spec)[0], vocab, opts)


def _concat(parts):
    """One TokenBatch of several (rows in order)."""
    from mazesearch.data.tokens import TokenBatch

    offsets = [np.zeros(1, np.int64)]
    base = 0
    for p in parts:
        offsets.append(p.offsets[1:].astype(np.int64) + base)
        base += int(p.offsets[-1])
    return TokenBatch(maze_id=np.concatenate([p.maze_id for p in parts]),
                      flat=np.concatenate([p.flat for p in parts]),
                      offsets=np.concatenate(offsets), prompt_len=np.concatenate([p.prompt_len for p in parts]))


def _step_fn(model, batcher, order, spec, bf16: bool = False):
    """Stage train's step (mazesearch.model.train.train_step) on the batches ``order`` gives, as
    a closure (returns the real tokens it fed)."""
    from mazesearch.model.schedule import make_optimizer
    from mazesearch.model.train import train_step

    opt = make_optimizer(model, spec.lr, spec.weight_decay, spec.beta1, spec.beta2,
                         fused_ok=batcher.device.type == "cuda")
    state = {"step": 0}

    def step() -> int:
        batch = batcher.batch(order.rows(state["step"]))
        state["step"] += 1
        train_step(model, opt, batch, spec.grad_clip, bf16)
        return batch.n_tokens

    return step


def _rate(step, n_steps: int) -> float:
    for _ in range(3):  # warm-up: allocator, kernel selection
        step()
    t0 = time.perf_counter()
    tokens = sum(step() for _ in range(n_steps))
    return tokens / (time.perf_counter() - t0)


def _padding_runs(configs: dict, cfg, tokens, pad_id: int, spec, steps: int, repeats: int = 2) -> dict:
    """Real tokens/s of each config (name -> (length_window, bf16)), repeats interleaved
    (order reversed every other repeat), median; padding share of the batches each one fed."""
    from mazesearch.model.batches import DataOrder, DeviceBatcher, padding_fraction
    from mazesearch.model.gpt import GPT

    out = {name: {"length_window": w, "bf16": bf, "rates": []} for name, (w, bf) in configs.items()}
    batcher = DeviceBatcher(tokens, pad_id, spec.loss_on)
    for r in range(repeats):
        for name in (list(configs) if r % 2 == 0 else list(configs)[::-1]):
            w, bf = configs[name]
            order = DataOrder(len(tokens), spec.batch_size, spec.seed, tokens.lengths, w)
            model = GPT(cfg, seed=0).train()
            out[name]["rates"].append(_rate(_step_fn(model, batcher, order, spec, bf), steps))
    for name, (w, _) in configs.items():
        order = DataOrder(len(tokens), spec.batch_size, spec.seed, tokens.lengths, w)
        out[name]["padding_frac"] = padding_fraction(tokens.lengths, [order.rows(s) for s in range(steps + 3)])
        out[name]["real_tokens_per_s"] = statistics.median(out[name]["rates"])
    return out


def _profile(step, n_steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tokens = sum(step() for _ in range(n_steps))
    wall = time.perf_counter() - t0
    split = dict.fromkeys([*CATEGORIES, "other_ops"], 0.0)
    for ev in prof.key_averages():
        name = ev.key.lower()
        cat = next((c for c, keys in CATEGORIES.items() if any(k.lower() in name for k in keys)), "other_ops")
        split[cat] += ev.self_cpu_time_total / 1e6  # seconds, self time: no double counting
    ops = sum(split.values())
    split["python_and_framework"] = max(wall - ops, 0.0)  # profiler overhead included
    return {"steps": n_steps, "wall_s": wall, "real_tokens": tokens,
            "seconds": split, "share": {k: v / wall for k, v in split.items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few steps, no compile (smoke run)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/bench/levers.json")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the default profile uses 2)")
    ap.add_argument("--steps", type=int, default=150, help="training steps per padding run")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps = 20

    import torch

    from mazesearch.bench.train import _gemm_floor
    from mazesearch.data.tokens import PAD, TokenizerOptions, Vocab
    from mazesearch.model.batches import DataOrder, DeviceBatcher
    from mazesearch.model.gpt import GPT
    from mazesearch.model.train import model_config
    from mazesearch.params import load_params

    p = load_params(args.params)
    dataset, _, tok = profile_specs(args.params, "train", {}, {})
    vocab = Vocab.build(tok["max_grid_n"])
    opts = TokenizerOptions(coord=tok["coord"], edges=tok["edges"], edge_order=tok["edge_order"], seed=tok["seed"])
    n = max(args.steps, 40) * p.train.batch_size
    default_tokens = _tokens(dataset, n, vocab, opts)
    mixed = _concat([_tokens({**dataset, "grid_n": k, "sizes": None, "seed": 100 + k}, n // len(MIXED_SIZES), vocab, opts)
                     for k in MIXED_SIZES])
    torch.set_num_threads(args.threads)
    model_spec = p.model.model_copy(update={"n_ctx": None})
    spec = p.train.model_copy(update={"num_threads": args.threads, "device": "cpu"})

    pad_id = vocab.token_to_id[PAD]
    padding = {}
    for name, tokens, configs in (("default", default_tokens, DEFAULT_CONFIGS), ("mixed_3_5", mixed, MIXED_CONFIGS)):
        cfg = model_config(model_spec, int(tokens.lengths.max()), len(vocab))
        padding[name] = _padding_runs(configs, cfg, tokens, pad_id, spec, args.steps, 1 if args.quick else 2)
        print(f"  {name}: " + ", ".join(f"{k} {v['real_tokens_per_s']:.0f} real tokens/s ({100 * v['padding_frac']:.1f}% padding)"
                                         for k, v in padding[name].items()), flush=True)

    cfg = model_config(model_spec, int(default_tokens.lengths.max()), len(vocab))
    model = GPT(cfg, seed=0).train()
    order = DataOrder(len(default_tokens), spec.batch_size, spec.seed, default_tokens.lengths, 16)
    batcher = DeviceBatcher(default_tokens, pad_id, spec.loss_on)
    prof = _profile(_step_fn(model, batcher, order, spec), 10 if args.quick else 40)
    real_per_step = prof["real_tokens"] / prof["steps"]
    print("  profile: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in prof["share"].items()), flush=True)

    mean_width = float(np.mean([default_tokens.lengths[order.rows(s)].max() - 1 for s in range(40)]))
    floor_s = {}
    for precision, bf16 in (("float32", False), ("bf16", True)):
        floor_step = _gemm_floor(model, (spec.batch_size, int(round(mean_width))), bf16)
        floor_step()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            floor_step()
            times.append(time.perf_counter() - t0)
        floor_s[precision] = statistics.median(times)
    gemm_bound = real_per_step / floor_s["float32"]

    compiled = None
    if not args.quick:
        compiled = _compare_compile(cfg, batcher, order, spec)
        print(f"  compile: eager {compiled['eager_tokens_per_s']:.0f}, compiled "
              f"{compiled['compiled_tokens_per_s']:.0f} tokens/s, logits rel diff {compiled['logits_max_rel_diff']:.1e}",
              flush=True)

    plain = padding["default"]["plain"]["real_tokens_per_s"]
    after = padding["default"]["buckets"]["real_tokens_per_s"]
    best = max(v["real_tokens_per_s"] for v in padding["default"].values())
    doc = {
        "benchmark": "levers",
        "model": {**cfg.to_dict(), "n_params": model.n_params()},
        "batch_size": spec.batch_size, "torch_threads": torch.get_num_threads(),
        "dataset": dataset, "mixed_sizes": list(MIXED_SIZES),
        "padding": padding,
        "profile": prof,
        "gemm_bound": {"real_tokens_per_s": gemm_bound, "s_per_step": floor_s["float32"],
                       "bf16_real_tokens_per_s": real_per_step / floor_s["bf16"], "bf16_s_per_step": floor_s["bf16"],
                       "mean_batch_width": mean_width, "best_vs_bound": best / gemm_bound},
        "speedup_vs_plain": {k: v["real_tokens_per_s"] / plain for k, v in padding["default"].items()},
        "compile": compiled,
        "machine": machine_info(),
    }
    write_report(args.out, doc)
    print(f"levers: default recipe, shuffled batches {plain:.0f} real tokens/s; length buckets {after / plain:.2f}x, "
          f"best {best / plain:.2f}x; GEMM-only bound {gemm_bound:.0f} (best is {best / gemm_bound:.2f} of it) -> {args.out}")


class _Cycle:
    """A batcher that hands out fixed batches in turn (same shapes for eager and compiled)."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def batch(self, rows):
        self.i += 1
        return self.batches[(self.i - 1) % len(self.batches)]


def _compare_compile(cfg, batcher, order, spec) -> dict:
    """Eager vs torch.compile on the same fixed batches: tokens/s of a training step, logits diff."""
    import torch

    from mazesearch.model.gpt import GPT

    batches = [batcher.batch(order.rows(s)) for s in range(4)]
    eager = GPT(cfg, seed=0).train()
    compiled_model = torch.compile(GPT(cfg, seed=0).train(), dynamic=True)
    with torch.no_grad():
        a, b = eager(batches[0].inputs), compiled_model(batches[0].inputs)
        rel = float((a - b).abs().max() / a.abs().max())
    out = {"logits_max_rel_diff": rel}
    for name, m in (("eager", eager), ("compiled", compiled_model)):
        step = _step_fn(m, _Cycle(batches), order, spec)
        t0 = time.perf_counter()
        step(), step()  # warm-up (compiles)
        out[f"{name}_first_steps_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tokens = sum(step() for _ in range(20))
        out[f"{name}_tokens_per_s"] = tokens / (time.perf_counter() - t0)
    out["speedup"] = out["compiled_tokens_per_s"] / out["eager_tokens_per_s"]
    return out


if __name__ == "__main__":
    main()
