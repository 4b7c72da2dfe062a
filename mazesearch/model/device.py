"""Where torch runs: an explicit device and thread count for every torch stage.

Results on the CPU never depend on whether CUDA is present: ``auto`` is resolved here, once,
and the stage prints the resolved device. Precision too: ``train.bf16: auto`` resolves here
against the device's native bf16 support. Thread counts are explicit because CPU kernels may
split reductions differently with a different number of threads.
"""

from __future__ import annotations

import contextlib
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


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bf16 natively: CUDA with bf16, or a CPU with AMX or
    AVX512-BF16 (torch's own CPU checks). Without it CPU autocast is emulated: on an AVX2-only
    EPYC the default's training ran about 8x slower in bf16 than planned (issue 26)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_bf16(setting: bool | str, device: torch.device | str) -> bool:
    """``train.bf16``: true / false as given; ``auto``: :func:`native_bf16`."""
    return native_bf16(device) if setting == "auto" else bool(setting)


def autocast(device: torch.device | str, bf16: bool):
    """bf16 autocast for the forward pass (weights, optimizer and loss stay float32). On CPU it
    pays only where the CPU has native bf16 matmuls (AMX / AVX512-BF16: ~1.2x per step on this
    project's machine, docs/performance.md); elsewhere it is emulated and slower."""
    device = torch.device(device)
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
