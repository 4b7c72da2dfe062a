"""Data-parallel training (mazesearch/model/distributed.py, stage train under torchrun): two CPU
processes on the gloo backend end with the weights of one process trained on the same global
batches (within float tolerance: only the order of the sums differs), rank 0 alone writes the
outputs, and a batch that does not split over the processes is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5  # |ddp - single| / max|single| per tensor: float sums in another order, 12 Adam steps
# The attention key bias shifts every score of a query equally, which softmax ignores: its true
# gradient is 0 and Adam turns float noise into lr-sized steps, so it only agrees to ~1e-3
# (measured 4e-4 and 1e-4 for the two layers).
KEY_BIAS_TOL = 1e-2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.tokens import Vocab, encode, write_tokens

    root = tmp_path_factory.mktemp("ddp")
    vocab = Vocab.build(3)
    vocab.to_json(root / "vocab.json")
    train_ids = None
    for name, n in (("train", 300), ("val", 24)):
        batch, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=n, seed=1 if name == "train" else 2,
                               exclude_ids=train_ids)
        train_ids = batch.maze_id if name == "train" else train_ids
        write_tokens(encode(batch, vocab), root / f"{name}.parquet")
    params = {
        "datasets": {"train": dict(generator="dfs", grid_n=3, n_mazes=300, seed=1),
                     "val": dict(generator="dfs", grid_n=3, n_mazes=24, seed=2)},
        "tokenizer": {"max_grid_n": 3},
        "model": dict(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, seed=0),
        "train": dict(device="cpu", batch_size=16, max_steps=12, lr=3e-3, warmup_steps=2, eval_every=1000,
                      eval_batches=1, num_threads=1, loss_on="path", n_snapshots=0, checkpoint_every=5,
                      seed=0, length_window=1),
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _train(root: Path, out: str, nproc: int = 1, **env_extra) -> subprocess.CompletedProcess:
    args = ["--params", str(root / "params.yaml"), "--train", str(root / "train.parquet"),
            "--val", str(root / "val.parquet"), "--vocab", str(root / "vocab.json"),
            "--model-dir", str(root / out / "models"), "--reports-dir", str(root / out / "reports"),
            "--checkpoint-dir", str(root / out / "checkpoints")]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
                if nproc > 1 else [sys.executable])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MAZESEARCH_DIST_BACKEND": "gloo",
           **env_extra}
    return subprocess.run([*launcher, "-m", "stages.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(path / "models" / "model.safetensors")


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(inputs):
    single = _train(inputs, "single")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _train(inputs, "ddp", nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "x 2 processes" in ddp.stdout, ddp.stdout
    a, b = _weights(inputs / "single"), _weights(inputs / "ddp")
    assert a.keys() == b.keys()
    moved = 0
    for key in a:
        scale = max(float(np.abs(a[key]).max()), 1e-6)
        tol = KEY_BIAS_TOL if key.endswith("attn.k.bias") else TOL
        assert float(np.abs(a[key] - b[key]).max()) / scale <= tol, key
        moved += not np.array_equal(a[key], b[key])
    assert moved, "bit-identical: the two runs did not differ at all (was DDP used?)"
    # training moved the weights far beyond the tolerance: the comparison is not trivially true
    from mazesearch.model.gpt import GPT, load_gpt

    init = GPT(load_gpt(inputs / "single" / "models").cfg, seed=0)
    w = init.state_dict()["blocks.0.attn.q.weight"].numpy()
    assert np.abs(a["blocks.0.attn.q.weight"] - w).max() > 1000 * TOL * np.abs(w).max()
    # rank 0 wrote the outputs once; the headline metrics agree
    ma = json.loads((inputs / "single" / "reports" / "metrics.json").read_text())
    mb = json.loads((inputs / "ddp" / "reports" / "metrics.json").read_text())
    assert ma["step"] == mb["step"] == 12 and abs(ma["val_loss"] - mb["val_loss"]) <= 1e-3 * abs(ma["val_loss"])


def test_a_killed_single_process_run_resumes_under_two_processes(inputs):
    """The resume state holds no trace of the process count: a run killed after its step-5
    checkpoint, resumed by 2 gloo processes, ends where the unbroken single-process run does."""
    from mazesearch.data.tokens import Vocab, read_tokens
    from mazesearch.model.train import train
    from mazesearch.params import load_params

    params = load_params(inputs / "params.yaml")
    vocab = Vocab.from_json(inputs / "vocab.json")
    tokens = [read_tokens(inputs / f"{n}.parquet", vocab=vocab) for n in ("train", "val")]

    class Killed(Exception):
        pass

    def kill_at_7(step):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        train(params.model, params.train, *tokens, vocab, checkpoint_dir=inputs / "resume" / "checkpoints",
              progress=False, on_step=kill_at_7)
    resumed = _train(inputs, "resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step 5" in resumed.stdout, resumed.stdout
    if not (inputs / "single" / "models").exists():
        assert _train(inputs, "single").returncode == 0
    a, b = _weights(inputs / "single"), _weights(inputs / "resume")
    for key in a:
        tol = KEY_BIAS_TOL if key.endswith("attn.k.bias") else TOL
        assert float(np.abs(a[key] - b[key]).max()) / max(float(np.abs(a[key]).max()), 1e-6) <= tol, key


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    from mazesearch.model import distributed

    distributed.check_batch(16, None)
    distributed.check_batch(16, distributed.Dist(rank=0, world=4, local_rank=0))
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        distributed.check_batch(16, distributed.Dist(rank=0, world=3, local_rank=0))
