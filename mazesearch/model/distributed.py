"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel).

``torchrun --standalone --nproc-per-node N -m stages.train`` starts N processes; each reads
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` from the environment (:func:`from_env`) and joins one
process group (gloo on CPU, nccl on CUDA). Every rank computes the same global batch order
(``DataOrder``: a pure function of ``(seed, step)``) and takes its slice ``rows[rank::world]``,
so the data order does not depend on the number of processes.

The loss is normalised by the *global* number of loss tokens (one all-reduce of a count per
step): each rank's loss is ``world * sum_r / N``, and DDP's gradient average then equals the
gradient of the single-process mean ``sum / N`` over the same global batch. Rank 0 alone logs,
evaluates, snapshots and writes; the others only compute. tests/test_ddp.py checks two gloo
processes against one process on the same global batch.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist | None:
    """The process group this process belongs to (initialised here if torchrun started it and
    nobody has yet), or None for a plain single-process run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("MAZESEARCH_DIST_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, local_rank=local_rank)


def device_for(dist: Dist | None, device: torch.device) -> torch.device:
    """One GPU per process (``cuda:LOCAL_RANK``); CPU processes share the CPU."""
    if dist is not None and device.type == "cuda":
        torch.cuda.set_device(dist.local_rank)
        return torch.device("cuda", dist.local_rank)
    return device


def check_batch(batch_size: int, dist: Dist | None) -> None:
    if dist is not None and batch_size % dist.world:
        raise ValueError(f"train.batch_size={batch_size} does not split over {dist.world} processes "
                         "(make it a multiple of --nproc-per-node x --nnodes)")


def wrap(model: torch.nn.Module, dist: Dist | None, device: torch.device) -> torch.nn.Module:
    if dist is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, world: int) -> torch.Tensor:
    """This rank's share of the global mean masked cross-entropy (module doc): logits ``[b, T, V]``."""
    import torch.distributed as dist

    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")  # [b*T]
    weights = mask.flatten().to(per_token.dtype)
    count = weights.sum().detach().clone()
    dist.all_reduce(count)  # global loss tokens
    return (per_token * weights).sum() * world / count.clamp(min=1.0)


def global_mean(value: torch.Tensor, dist: Dist | None) -> torch.Tensor:
    """Mean of a per-rank tensor over ranks (for logging the global loss)."""
    if dist is None:
        return value
    import torch.distributed as tdist

    value = value.clone()
    tdist.all_reduce(value)
    return value / dist.world


def finish(dist: Dist | None) -> None:
    if dist is not None:
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.barrier()
            tdist.destroy_process_group()
