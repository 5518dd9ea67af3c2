"""The process group of a comparison under ``torchrun`` (one process: no group at all)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Dist", "init_dist"]


@dataclass
class Dist:
    """The process group, if any: ``world`` processes, this one being ``rank``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this Dist made the process group, so close() destroys it

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        """Destroy the process group this Dist made (a group made by the caller is left alone).

        A process that exits with its gloo group still alive sometimes aborts in the group's
        destructor ("terminate called without an active exception", SIGABRT): 2 of 72 two-rank
        torchrun runs of a minimal script on this machine, none of 112 with the group destroyed first.
        """
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self.owns_group = False


def init_dist(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not td.is_initialized()
    if owns:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        td.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, local_rank=local, owns_group=owns)


_init_dist = init_dist
