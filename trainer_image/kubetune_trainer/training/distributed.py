"""Process groups and data-parallel wrapping: DDP by default, FSDP2 (`fully_shard`) when asked.

Ranks come from torchrun's environment through `DistInfo.from_env`; the backend follows the
device (gloo on CPU, nccl on GPU). A plain run (world size 1) never creates a process group and
every collective here is then a no-op, so the loop reads the same either way.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, _redistribute
from torch.distributed.tensor import debug as dtensor_debug
from torch.distributed.tensor._collective_utils import MeshTopoInfo
from torch.nn.parallel import DistributedDataParallel

from ..context import DistInfo
from ..contract import Strategy
from ..model_blocks import no_split_blocks


def pick_device(info: DistInfo) -> torch.device:
    """One GPU per local rank when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def init_process_group(info: DistInfo, *, device: torch.device, timeout_seconds: float = 1800.0) -> None:
    """Join torchrun's rendezvous (env://); nothing to do for a single process."""
    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_seconds))


def teardown() -> None:
    """End the process group so that its threads stop here, before the interpreter's shutdown.

    `destroy_process_group` forgets the groups, but a gloo group's threads (two workers and a TCP loop)
    stop only when the group's last reference goes. The DDP and FSDP wrappers hold theirs in reference
    cycles (their hooks), collected here; FSDP2's device mesh holds its groups, and torch's DTensor caches
    hold the mesh (through every DTensor spec they cached), so they are emptied first. Without this every
    FSDP2 rank exited with its gloo threads running, as did the ranks the test suite saw abort at exit
    ("terminate called without an active exception": SIGABRT, a non-zero exit the operator reads as a
    crash even after a success; docs/testing.md).
    Call it once the run's model and optimizer are no longer referenced.
    """
    if not dist.is_initialized():
        return
    for clear in _dtensor_caches():
        clear()
    gc.collect()
    dist.destroy_process_group()


def _dtensor_caches() -> list[Callable[[], object]]:
    """The `cache_clear`s of torch's DTensor caches that keep device meshes (torch 2.13's names; one that
    a later torch renames is skipped, and the tests of `teardown` find the threads it leaves)."""
    propagator = getattr(getattr(DTensor, "_op_dispatcher", None), "sharding_propagator", None)
    found = [
        getattr(_redistribute, "clear_redistribute_planner_cache", None),
        getattr(getattr(_redistribute, "_gen_transform_infos", None), "cache_clear", None),
        getattr(dtensor_debug, "_clear_sharding_prop_cache", None),
        getattr(getattr(propagator, "_propagate_tensor_meta_cached", None), "cache_clear", None),
        getattr(getattr(MeshTopoInfo, "build_from_mesh", None), "cache_clear", None),
    ]
    return [clear for clear in found if clear is not None]


def wrap_model(model: nn.Module, *, info: DistInfo, strategy: Strategy, device: torch.device) -> nn.Module:
    """DDP or FSDP2 around `model` when there is more than one process; the model itself otherwise."""
    if not info.distributed:
        return model
    if strategy is Strategy.FSDP:
        return _fully_shard(model, world_size=info.world_size, device=device)
    device_ids = [device.index] if device.type == "cuda" else None
    # Every parameter takes part in every step (no unused branches), so no search for unused ones.
    # The only buffers are rotary tables every rank computes alike; syncing them before each forward
    # would make each forward a collective, and ranks may run different numbers of forwards. (They
    # are synced once at construction, which, being alike, changes nothing. `broadcast_buffers` is
    # torch 2.13's deprecated name for this switch, with a FutureWarning per rank.)
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=False, forward_sync_buffers=False
    )


def _fully_shard(model: nn.Module, *, world_size: int, device: torch.device) -> nn.Module:
    mesh = init_device_mesh(device.type, (world_size,))
    # Shard each transformer block on its own (the classes HF names as never to be split), so
    # only one block's full weights are gathered at a time; then the rest (embeddings, head).
    for block in no_split_blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(model, DistributedDataParallel) and inner is not None else model


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (a no-op without a process group); returns the tensor."""
    return _all_reduce(values, op=dist.ReduceOp.SUM)


def all_reduce_max(values: torch.Tensor) -> torch.Tensor:
    """Maximum over ranks in place (a no-op without a process group); returns the tensor."""
    return _all_reduce(values, op=dist.ReduceOp.MAX)


def max_over_ranks(value: float) -> float:
    """The largest of every rank's `value` (a collective; `value` itself without a process group)."""
    return float(all_reduce_max(torch.tensor([value], dtype=torch.float64))[0])


def _all_reduce(values: torch.Tensor, *, op: Any) -> torch.Tensor:
    if not dist.is_initialized():
        return values
    if dist.get_backend() == "nccl":
        # NCCL reduces GPU memory only; the loop's small tallies live on the CPU.
        on_gpu = values.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=op)
        values.copy_(on_gpu)
    else:
        dist.all_reduce(values, op=op)
    return values


def cpu_side_group() -> Any:
    """A gloo process group over every rank for agreements the CPU decides alone, when the default group is
    NCCL (None: the default group is gloo already, or there is none). A collective: every rank calls it.

    A flag all-reduced on the CPU over gloo syncs the ranks' CPU threads only; over NCCL it would wait
    for each rank's GPU stream too, so the CPU could no longer queue work ahead of its GPU.
    """
    if not dist.is_initialized() or dist.get_backend() != "nccl":
        return None
    return dist.new_group(backend="gloo")


def cpu_all_reduce_sum(values: torch.Tensor, *, group: Any) -> torch.Tensor:
    """Sum a CPU tensor over `group` (a `cpu_side_group`, None: the default gloo group) in place."""
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=group)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
