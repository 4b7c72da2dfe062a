"""Training throughput: the hook-free GPT against the TransformerLens bridge, one run.

``python -m mazesearch.bench train [--quick] [--threads N]`` builds real maze batches (the
params' training dataset shape, else dfs 5x5; right-padded, ~120 tokens) and one model shape
(params ``model``, else d_model 128, 4 layers, 4 heads of 32, d_mlp 512), then trains two copies
of the same initial weights on the same batches with the project's own training step
(mazesearch.model.train: path-token loss, AdamW param groups, grad clipping):

* ``gpt``: mazesearch.model.gpt.GPT, what stage train uses;
* ``bridge``: ``TransformerBridge.boot_native`` with those weights (mazesearch.interp.bridge), trained
  directly — the alternative the GPT exists to avoid.

Repeats alternate which model goes first; each reports median tokens per wall second and per
CPU second of this process (less sensitive to other load). ``ratio`` = gpt / bridge. Also
timed: ``gemm_floor``, only the linear layers' matmuls (forward + both backward products) for
the same tokens: work both models must do, so bridge time / floor time bounds the achievable
ratio. ``--bf16`` runs both under bf16 autocast (and adds a float32 bridge as a reference).

On a GPU: ``python -m mazesearch.bench train --device cuda --bf16 --compile --batch-size 256
--grid-n 6 --d-model 128 --n-layers 6 --steps 50`` gives eager vs compiled
(``torch.compile(mode="max-autotune")``: CUDA graphs) vs the bridge on the same GPU in one
process (batches live on the device; a step never waits on it: the loss stays a tensor, AdamW
is fused; one synchronize per timed repeat). Writes ``reports/bench/train.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mazesearch.bench import machine_info, profile_specs, write_report

DEFAULT_MODEL = dict(d_model=128, n_layers=4, n_heads=4, d_head=32, d_mlp=512, act_fn="gelu",
                     normalization="LN", positional="learned", seed=0)
DEFAULT_DATASET = dict(generator="dfs", grid_n=5, seed=1)
TRAIN_SETTINGS = dict(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0)


def _train_step(model, batches, bf16, lr, weight_decay, beta1, beta2, grad_clip, device="cpu"):
    """Stage train's step (mazesearch.model.train.train_step) over the cycled ``batches``, as a
    closure over this model's optimizer (AdamW, fused on CUDA). Returns (real tokens, loss
    tensor); nothing waits on the device inside a step."""
    import torch

    from mazesearch.model.schedule import make_optimizer
    from mazesearch.model.train import train_step

    optimizer = make_optimizer(model, lr, weight_decay, beta1, beta2, fused_ok=torch.device(device).type == "cuda")
    state = {"i": 0}

    def step():
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        return batch.n_tokens, train_step(model, optimizer, batch, grad_clip, bf16)

    return step


def _gemm_floor(model, batch_shape: tuple[int, int], bf16: bool):
    """One 'step' of only the linear layers' matmuls: y = x W^T + b, then dX and dW."""
    import contextlib

    import torch
    import torch.nn.functional as F

    rows = batch_shape[0] * batch_shape[1]
    g = torch.Generator().manual_seed(0)
    layers = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            w = module.weight.detach().clone().requires_grad_()
            b = None if module.bias is None else module.bias.detach().clone().requires_grad_()
            x = torch.randn(rows, module.in_features, generator=g).requires_grad_()
            gy = torch.randn(rows, module.out_features, generator=g)
            layers.append((x, w, b, gy))

    def step() -> None:
        for x, w, b, gy in layers:
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                y = F.linear(x, w, b)
            y.backward(gy.to(y.dtype))
            x.grad = w.grad = None
            if b is not None:
                b.grad = None

    return step


def _rates(step, n_steps: int, sync) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) over n_steps calls of step; ``sync``
    waits for the device once at the end (queued GPU work counts)."""
    tokens = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        tokens += step()[0]
    sync()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return tokens / wall, tokens / max(cpu, 1e-9)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small batch, few repeats (smoke run)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/bench/train.json")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per model (median reported)")
    ap.add_argument("--steps", type=int, default=3, help="training steps per timed repeat")
    ap.add_argument("--bf16", action="store_true",
                    help="both models under CPU bf16 autocast, plus a float32 bridge for reference")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a busy 2-core machine 2 threads spin and lose)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where to train (cuda: bf16 autocast applies there; batches live on the device)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(gpt) (CUDA graphs on cuda)")
    ap.add_argument("--d-model", type=int, help="override the model width (d_head = d_model / n_heads, d_mlp = 4x)")
    ap.add_argument("--n-layers", type=int, help="override the number of layers")
    ap.add_argument("--grid-n", type=int, help="override the maze size")
    args = ap.parse_args(argv)
    for name in ("batch_size", "repeats", "steps", "threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.quick:
        args.batch_size, args.repeats, args.steps = 16, 2, 1

    import torch

    from mazesearch.interp.bridge import to_bridge
    from mazesearch.data.dataset import build_mazes
    from mazesearch.model.gpt import GPT, ModelConfig
    from mazesearch.data.tokens import PAD, TokenizerOptions, Vocab, encode
    from mazesearch.model.batches import make_lm_batch

    n_batches = 4  # distinct batches, cycled
    dataset, model_spec, tok = profile_specs(args.params, "train", DEFAULT_DATASET, DEFAULT_MODEL)
    if args.grid_n:
        dataset["grid_n"] = args.grid_n
        tok["max_grid_n"] = max(tok["max_grid_n"], args.grid_n)
    if args.d_model or args.n_layers:
        d = args.d_model or model_spec["d_model"]
        model_spec.update(d_model=d, d_head=d // model_spec["n_heads"], d_mlp=4 * d,
                          n_layers=args.n_layers or model_spec["n_layers"])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    mazes, _ = build_mazes(n_mazes=n_batches * args.batch_size, **dataset)
    torch.set_num_threads(args.threads)
    vocab = Vocab.build(tok["max_grid_n"])
    opts = TokenizerOptions(coord=tok.get("coord", "unary"), edges=tok.get("edges", "adjlist"),
                            edge_order=tok.get("edge_order", "shuffled"), seed=tok.get("seed", 0))
    tokens = encode(mazes, vocab, opts)
    pad_id = vocab.token_to_id[PAD]
    batches = [make_lm_batch(tokens, np.arange(i * args.batch_size, (i + 1) * args.batch_size), pad_id, "path",
                             device) for i in range(n_batches)]
    spec = {k: v for k, v in model_spec.items() if k not in ("seed", "n_ctx")}
    cfg = ModelConfig(n_ctx=int(tokens.lengths.max()), d_vocab=len(vocab), **spec)
    seed = int(model_spec.get("seed", 0))
    models = {"gpt": GPT(cfg, seed=seed).to(device).train(), "bridge": to_bridge(GPT(cfg, seed=seed)).to(device).train()}
    if args.compile:
        models["gpt_compiled"] = torch.compile(GPT(cfg, seed=seed).to(device).train(),
                                               mode="max-autotune" if device.type == "cuda" else None)
    steps = {name: _train_step(m, batches, args.bf16, **TRAIN_SETTINGS, device=device) for name, m in models.items()}
    if args.bf16:
        bridge_fp32 = to_bridge(GPT(cfg, seed=seed)).to(device).train()
        steps["bridge_fp32"] = _train_step(bridge_fp32, batches, False, **TRAIN_SETTINGS, device=device)

    first_loss = {name: float(step()[1]) for name, step in steps.items()}  # same weights, same batch
    for step in steps.values():  # warm-up: allocator, kernel selection, compilation
        step(), step()
    sync()
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for r in range(args.repeats):
        for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            rates[name].append(_rates(steps[name], args.steps, sync))
    floor_step = _gemm_floor(GPT(cfg, seed=seed), tuple(batches[0].inputs.shape), args.bf16)  # on the CPU
    floor_step()
    floor_s = []
    for _ in range(args.repeats):
        c0 = time.process_time()
        floor_step()
        floor_s.append(time.process_time() - c0)

    results = {
        name: {
            "tokens_per_s": statistics.median(w for w, _ in rs),
            "tokens_per_cpu_s": statistics.median(c for _, c in rs),
            "tokens_per_s_repeats": [round(w, 1) for w, _ in rs],
        }
        for name, rs in rates.items()
    }
    mean_tokens = float(np.mean([b.n_tokens for b in batches]))
    bridge_cpu_s_per_step = mean_tokens / results["bridge"]["tokens_per_cpu_s"]
    gpt_cpu_s_per_step = mean_tokens / results["gpt"]["tokens_per_cpu_s"]
    floor = statistics.median(floor_s)
    doc = {
        "benchmark": "train",
        "what": "tokens/s of one training step (forward, path-token loss, backward, grad clip, AdamW)",
        "dataset": {**dataset, "n_mazes": len(mazes)},
        "model": {**cfg.to_dict(), "n_params": models["gpt"].n_params(), "seed": seed},
        "batch_size": args.batch_size,
        "padded_shape": list(batches[0].inputs.shape),
        "mean_real_tokens_per_batch": mean_tokens,
        "optimizer": {**TRAIN_SETTINGS, "kind": "AdamW foreach (mazesearch.model.schedule.make_optimizer)"},
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "precision": f"bf16 autocast ({device.type})" if args.bf16 else "float32",
        "results": results,
        "ratio": results["gpt"]["tokens_per_s"] / results["bridge"]["tokens_per_s"],
        "ratio_cpu": results["gpt"]["tokens_per_cpu_s"] / results["bridge"]["tokens_per_cpu_s"],
        "first_step_loss": first_loss,
        "first_step_loss_abs_diff": abs(first_loss["gpt"] - first_loss["bridge"]),
        **({"ratio_vs_fp32_bridge": results["gpt"]["tokens_per_s"] / results["bridge_fp32"]["tokens_per_s"]}
           if args.bf16 else {}),
        **({"ratio_compiled_vs_eager": results["gpt_compiled"]["tokens_per_s"] / results["gpt"]["tokens_per_s"],
            "ratio_compiled_vs_bridge": results["gpt_compiled"]["tokens_per_s"] / results["bridge"]["tokens_per_s"]}
           if args.compile else {}),
        "gemm_floor": {
            "cpu_s_per_step": floor,
            "share_of_gpt_step": floor / gpt_cpu_s_per_step,
            "share_of_bridge_step": floor / bridge_cpu_s_per_step,
            "max_ratio_if_gpt_were_only_gemms": bridge_cpu_s_per_step / floor,
        },
        "machine": machine_info(),
    }
    write_report(args.out, doc)
    print(f"train: gpt {results['gpt']['tokens_per_s']:.0f} tok/s, bridge {results['bridge']['tokens_per_s']:.0f} "
          f"tok/s -> ratio {doc['ratio']:.2f}x (CPU-time ratio {doc['ratio_cpu']:.2f}x; the linear-layer GEMMs "
          f"alone are {100 * doc['gemm_floor']['share_of_bridge_step']:.0f}% of a bridge step)"
          + (f"; vs a float32 bridge {doc['ratio_vs_fp32_bridge']:.2f}x" if args.bf16 else "")
          + (f"; compiled {results['gpt_compiled']['tokens_per_s']:.0f} tok/s ({doc['ratio_compiled_vs_eager']:.2f}x eager)"
             if args.compile else "") + f" on {device} -> {args.out}")


if __name__ == "__main__":
    main()
