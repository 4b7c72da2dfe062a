"""Activation cache benchmark: cached mazes/s vs a plain forward, and peak memory vs N.

``python -m mazesearch.bench activations [--quick]`` builds mazes of the profile's test set
(params.yaml ``datasets.test``, else dfs 5x5) and a randomly initialised GPT of the params' model
shape (else d_model 128, 4 layers), then, in one run and on the same batches:

* ``plain_forward``: the fast GPT module's forward (logits, no grad) over every batch: the reference;
* ``cache_gpt`` / ``cache_bridge``: the whole ``extract_activations`` (index, forward, gather,
  float16 cast, writes, rename) with the default hooks, on each backend.

Repeats are interleaved (plain, gpt, bridge, plain, ...) so machine load hits all alike; the
ratio cached / plain (target >= 0.5) is the median of the per-repeat ratios.

Peak memory: the extraction runs in fresh subprocesses at two N (default 500 and 4000 mazes),
each reading the same tokens file and checkpoint, and so does the plain forward over the same
batches (the reference: torch + glibc's allocator alone make its peak vary by ~100 MB from run
to run and creep up with the number of batches), and the extraction once more with glibc's mmap
threshold pinned (``MALLOC_MMAP_THRESHOLD_``), which removes that heap fragmentation. Each child
reports its peak resident set (VmHWM); medians over repeats. The pinned run isolates what the
extraction itself holds: a flat peak while the cache grows 8x means the writer streams.
Writes ``reports/bench/activations.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mazesearch.bench import machine_info, profile_specs, write_report

DEFAULT_MODEL = dict(d_model=128, n_layers=4, n_heads=4, d_head=32, d_mlp=512, act_fn="gelu",
                     normalization="LN", positional="learned", seed=0)
DEFAULT_DATASET = dict(generator="dfs", grid_n=5, seed=3)


def peak_rss_kb() -> int:
    """This process's peak resident set size so far, in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _child(workdir: Path, n_mazes: int, mode: str, batch_size: int) -> None:
    """Subprocess body: load, then extract (or only run the forward over) the first ``n_mazes``;
    print the peak resident set after setup and at the end, as JSON."""
    import numpy as np
    import torch

    from mazesearch.interp.activations import extract_activations
    from mazesearch.model.gpt import load_gpt
    from mazesearch.data.tokens import Vocab, read_tokens

    meta = json.loads((workdir / "setup.json").read_text())
    tokens = read_tokens(workdir / "tokens.parquet")
    vocab = Vocab.from_json(workdir / "vocab.json")
    model = load_gpt(workdir / "model").eval()
    setup_kb = peak_rss_kb()
    cache_mb = 0.0
    if mode == "extract":
        store = extract_activations(model, tokens, vocab, meta["grid_n"], workdir / f"acts_{n_mazes}",
                                    n_mazes=n_mazes, batch_size=batch_size)
        cache_mb = sum(store.load(layer).nbytes for layer in store.layers) / 2**20
    else:  # the reference: the plain forward over the same batches
        with torch.inference_mode():
            for i in range(0, n_mazes, batch_size):
                batch = tokens.take(np.arange(i, min(i + batch_size, n_mazes)))
                model(torch.from_numpy(batch.padded(vocab.pad_id, dtype=np.int64)))
    print(json.dumps({"setup_mb": setup_kb / 1024, "peak_mb": peak_rss_kb() / 1024, "cache_mb": cache_mb}))


# glibc raises its mmap threshold as large blocks are freed, after which the forward's big
# temporaries fragment the heap; pinning it shows what the extraction itself holds.
_PINNED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
MEMORY_RUNS = {"extract": {}, "plain": {}, "extract_pinned_mmap_threshold": _PINNED}


def _memory(workdir: Path, ns: tuple[int, ...], repeats: int, batch_size: int, threads: int) -> list[dict]:
    """Peak RSS of extraction and of the plain forward, each in fresh processes, at every N."""
    out = []
    for n in ns:
        entry: dict = {"n_mazes": n}
        for name, env in MEMORY_RUNS.items():
            mode = "plain" if name == "plain" else "extract"
            runs = []
            for _ in range(repeats):
                cmd = [sys.executable, "-m", "mazesearch.bench.activations", "--child", str(workdir), str(n), mode,
                       "--batch-size", str(batch_size), "--threads", str(threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
                if proc.returncode != 0:
                    raise SystemExit(f"error: memory child ({mode}, N={n}) failed:\n{proc.stderr[-3000:]}")
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            peaks = [r["peak_mb"] for r in runs]
            entry[name] = {"peak_rss_mb_median": statistics.median(peaks), "peak_rss_mb_repeats": peaks,
                           "setup_rss_mb": statistics.median(r["setup_mb"] for r in runs)}
            if mode == "extract":
                entry["cache_mb"] = runs[0]["cache_mb"]
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer mazes and repeats (smoke run)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/bench/activations.json")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--child", nargs=3, metavar=("WORKDIR", "N", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    if args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.child:
        _child(Path(args.child[0]), int(args.child[1]), args.child[2], args.batch_size)
        return

    from mazesearch.interp.activation_store import ActivationStore
    from mazesearch.interp.activations import extract_activations
    from mazesearch.data.dataset import build_mazes
    from mazesearch.model.gpt import GPT, ModelConfig, save_checkpoint
    from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, write_tokens

    n_speed, rss_ns, repeats, mem_repeats = (200, (100, 800), 1, 1) if args.quick else (1000, (500, 4000), 3, 3)
    dataset, model_spec, tok = profile_specs(args.params, None, DEFAULT_DATASET, DEFAULT_MODEL)
    batch, _ = build_mazes(n_mazes=max(n_speed, *rss_ns), **dataset)
    vocab = Vocab.build(tok["max_grid_n"])
    opts = TokenizerOptions(coord=tok.get("coord", "unary"), edges=tok.get("edges", "adjlist"),
                            edge_order=tok.get("edge_order", "shuffled"), seed=tok.get("seed", 0))
    tokens = encode(batch, vocab, opts)
    spec = {k: v for k, v in model_spec.items() if k not in ("seed", "n_ctx")}
    cfg = ModelConfig(n_ctx=int(tokens.lengths.max()), d_vocab=len(vocab), **spec)
    model = GPT(cfg, seed=int(model_spec.get("seed", 0))).eval()
    speed_tokens = tokens.take(range(n_speed))
    bs = args.batch_size
    padded = [torch.from_numpy(speed_tokens.take(range(i, min(i + bs, n_speed))).padded(vocab.pad_id, dtype="int64"))
              for i in range(0, n_speed, bs)]

    with tempfile.TemporaryDirectory(prefix="bench_activations_") as tmp:
        tmp = Path(tmp)

        def plain() -> None:
            with torch.inference_mode():
                for ids in padded:
                    model(ids)

        def cache(backend: str):
            return lambda: extract_activations(model, speed_tokens, vocab, batch.grid_n, tmp / backend,
                                               batch_size=bs, backend=backend)

        runs = {"plain_forward": plain, "cache_gpt": cache("gpt"), "cache_bridge": cache("bridge")}
        for fn in runs.values():  # warm-up: imports, bridge boot, allocator
            fn()
        wall = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        for _ in range(repeats):
            for name, fn in runs.items():
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        rows = len(ActivationStore(tmp / "gpt"))
        results = {name: {"mazes_per_s": n_speed / statistics.median(wall[name]),
                          "mazes_per_cpu_s": n_speed / statistics.median(cpu[name]),
                          "seconds_repeats": [round(s, 3) for s in wall[name]]} for name in runs}
        ratios = {backend: statistics.median(p / c for p, c in zip(wall["plain_forward"], wall[f"cache_{backend}"]))
                  for backend in ("gpt", "bridge")}

        # peak memory at two N, each in fresh processes
        (tmp / "model").mkdir()
        save_checkpoint(model, tmp / "model")
        write_tokens(tokens, tmp / "tokens.parquet")
        vocab.to_json(tmp / "vocab.json")
        (tmp / "setup.json").write_text(json.dumps({"grid_n": batch.grid_n}))
        memory = _memory(tmp, rss_ns, mem_repeats, bs, args.threads)

    growth = {name: memory[-1][name]["peak_rss_mb_median"] - memory[0][name]["peak_rss_mb_median"]
              for name in MEMORY_RUNS}
    doc = {
        "benchmark": "activations",
        "dataset": {**dataset, "n_mazes": n_speed},
        "model": {**cfg.to_dict(), "n_params": model.n_params(), "init": "random"},
        "hooks": ["embed", "resid_post"],
        "positions": ["target_end", "path_start", "path"],
        "batch_size": bs,
        "rows_cached": rows,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "ratio_cached_vs_plain": {"gpt": ratios["gpt"], "bridge": ratios["bridge"], "target": 0.5},
        "memory": memory,
        "peak_rss_growth_mb": {**growth, "cache_mb": memory[-1]["cache_mb"] - memory[0]["cache_mb"],
                               "from_n": rss_ns[0], "to_n": rss_ns[-1]},
        "machine": machine_info(),
    }
    write_report(args.out, doc)
    print(f"activations: cached {results['cache_gpt']['mazes_per_s']:.0f} mazes/s (gpt backend, "
          f"{ratios['gpt']:.2f}x plain forward; bridge {ratios['bridge']:.2f}x); peak RSS N={rss_ns[0]} -> "
          f"{rss_ns[-1]}: extraction {growth['extract']:+.0f} MB, plain forward {growth['plain']:+.0f} MB, "
          f"extraction with a pinned mmap threshold {growth['extract_pinned_mmap_threshold']:+.0f} MB, "
          f"cache {doc['peak_rss_growth_mb']['cache_mb']:+.0f} MB -> {args.out}")


if __name__ == "__main__":
    main()
