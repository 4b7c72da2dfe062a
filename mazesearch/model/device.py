"""Where torch runs: an explicit device and thread count for every torch stage.

Results on the CPU never depend on whether CUDA is present: ``auto`` is resolved here, once,
and the stage prints the resolved device. Thread counts are explicit because CPU kernels may
split reductions differently with a different number of threads.
"""

from __future__ import annotations

from typing import Literal

import torch

Device = Literal["auto", "cpu", "cuda"]


def resolve_device(device: Device, key: str = "device") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error naming ``key``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}=cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(device)


def set_threads(num_threads: int) -> None:
    """Fix torch's CPU thread count (numba runs on its own workqueue pool, not OpenMP: data/jit.py)."""
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 (got {num_threads})")
    torch.set_num_threads(num_threads)
