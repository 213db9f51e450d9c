"""torch.distributed helpers: set-up from torchrun's environment, samplers, metric reduction.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains on its shard; rank 0 alone writes
logs and checkpoints. Without torchrun everything below degrades to the single-process case.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_kind: str, backend: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment variables (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    if backend == "auto":
        backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    log.info("process %d of %d joined (%s)", rank, world, backend)
    return DistInfo(rank, world, local_rank, True)


def teardown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor; the input is left alone)."""
    t = t.clone()
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ShardSampler(Sampler):
    """Like ``DistributedSampler`` (seeded by ``seed + epoch``, padded to equal shards), plus:

    - yields ``(index, epoch)`` pairs, so ``SeededDataset`` can seed each item's augmentation from
      ``(seed, epoch, index)`` alone: identical across worker counts, ranks and resumes;
    - ``set_epoch(epoch, skip=k)`` starts the epoch after its first ``k`` items (resume mid-epoch);
    - ``shuffle=False, pad=False`` gives unpadded shards for exact evaluation.

    With one process and the same seed, global batch ``b`` holds the same clips as the union of
    the ranks' batches ``b`` in a multi-process run, so the two agree.
    """

    def __init__(self, length: int, info: DistInfo, *, shuffle: bool, seed: int, pad: bool = True) -> None:
        self.length, self.rank, self.world = length, info.rank, info.world_size
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.pad and self.world > 1:
            total = math.ceil(self.length / self.world) * self.world
            order += order[: total - len(order)]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self._indices()[self.skip :]:
            yield (i, self.epoch)

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.skip)
