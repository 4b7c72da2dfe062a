"""A training run's state on disk: the resume checkpoint of a killed run and the weight snapshots.

A run is resumed only from a checkpoint of the exact same run: :func:`run_fingerprint` hashes
params, the resolved model config, the device, the vocabulary, the token data and the source of
the training code, and :func:`load_training_state` starts fresh on any mismatch. The state is
written atomically (a kill mid-write keeps the previous one) and dropped once the run's outputs
are written. Snapshots are the weights at :func:`snapshot_steps` (stage dynamics reads them).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.io import InputError, atomic_path
from mazesearch.model.gpt import ModelConfig
from mazesearch.params import ModelSpec, TrainSpec

CHECKPOINT_FILE = "state.pt"


def run_fingerprint(
    model_spec: ModelSpec, train_spec: TrainSpec, cfg: ModelConfig, device: torch.device,
    train_tokens: TokenBatch, val_tokens: TokenBatch, vocab: Vocab,
) -> str:
    """sha256 of everything that determines the run's result: params, resolved model config,
    device, vocabulary, the token data itself and the source of the training code (so a resumed
    run never continues state written by other code; ``checkpoint_every`` is left out: it
    changes when state is saved, not what is computed)."""
    h = hashlib.sha256()
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.name.encode() + src.read_bytes())
    spec = {
        "model": model_spec.model_dump(),
        "train": train_spec.model_dump(exclude={"checkpoint_every"}),
        "config": cfg.to_dict(),
        "device": device.type,
        "vocab": list(vocab.id_to_token),
    }
    h.update(json.dumps(spec, sort_keys=True).encode())
    for tb in (train_tokens, val_tokens):
        for arr in (tb.flat, tb.offsets, tb.prompt_len, tb.maze_id):
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


SNAPSHOTS = "snapshots"  # under the checkpoint dir while training; models/snapshots afterwards


def snapshot_steps(max_steps: int, n_snapshots: int) -> list[int]:
    """Step 0 (the initial weights: where every curve starts) and ``n_snapshots`` evenly spaced
    steps ending at ``max_steps`` (distinct, increasing); none when ``n_snapshots`` is 0."""
    if n_snapshots == 0:
        return []
    return sorted({0} | {max(1, round(max_steps * k / n_snapshots)) for k in range(1, n_snapshots + 1)})


def snapshot_name(step: int) -> str:
    return f"step_{step:07d}"


def save_training_state(checkpoint_dir: str | Path, state: dict) -> None:
    """torch.save to a temp file then rename: a kill mid-write keeps the previous checkpoint."""
    with atomic_path(Path(checkpoint_dir) / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)


def clear_training_state(checkpoint_dir: str | Path) -> None:
    """Drop the resume state once the run's outputs are written: it exists only for killed runs."""
    (Path(checkpoint_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)


def load_training_state(checkpoint_dir: str | Path | None, fingerprint: str) -> dict | None:
    """The saved state if it belongs to this exact run, else None (start fresh)."""
    if checkpoint_dir is None:
        return None
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        # a damaged file is an error, not a silent restart: the user decides whether to drop it
        raise InputError(path, f"training checkpoint is unreadable ({exc.__class__.__name__}: {exc})",
                         "delete it to train from scratch") from None
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise InputError(path, "is not a mazesearch training checkpoint", "delete it to train from scratch")
    if state["fingerprint"] != fingerprint:
        print(f"train: checkpoint {path} is from a different run (params, data or code changed); starting fresh")
        return None
    return state
