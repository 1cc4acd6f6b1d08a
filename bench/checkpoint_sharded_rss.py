"""Peak RSS per rank of a sharded (DCP) checkpoint save against a full-state gather (a script, not a test).

    MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 \
        torchrun --standalone --nproc-per-node 4 bench/checkpoint_sharded_rss.py [--hidden 2048] [--layers 8]

(The fixed mmap threshold makes glibc return every large tensor's memory when it is freed, so
RSS follows the live tensors rather than the heap's high-water mark.) Every rank builds the same
stack of Linear layers on the meta device, shards it with FSDP2 (`fully_shard`, gloo on CPU) and
only then allocates its own shard (no rank ever holds the whole model), takes one AdamW step (so
the optimizer state exists) and then, in the same run:

1. the baseline: the full state gathered to every rank's CPU memory, as the trainer did before
   (`get_model_state_dict` / `get_optimizer_state_dict` with `full_state_dict=True, cpu_offload=True`);
2. the trainer's `save_checkpoint` (DCP: each rank writes its own shards).

A thread samples VmRSS every 2 ms during each; rank 0 prints, per rank, the growth over the RSS
before each (the memory the save itself took), the full state's size, and the ratio. The sharded
save runs first, so the baseline's gathered tensors cannot have inflated its number.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from kubetune_trainer.context import DistInfo
from kubetune_trainer.training.checkpoint import CheckpointState, save_checkpoint


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_growth(action: Callable[[], object]) -> int:
    """Bytes of RSS above the level before `action`, at its highest while it ran."""
    start = _rss_bytes()
    peak = start
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    kept = action()
    running = False
    sampler.join()
    peak = max(peak, _rss_bytes())
    del kept
    return peak - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    info = DistInfo.from_env(os.environ)
    torch.manual_seed(0)
    with torch.device("meta"):
        model = nn.Sequential(*(nn.Linear(args.hidden, args.hidden) for _ in range(args.layers)))
    mesh = init_device_mesh("cpu", (info.world_size,))
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device="cpu")
    for layer in model:
        layer.reset_parameters()  # type: ignore[operator]
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model(torch.randn(4, args.hidden)).sum().backward()
    optimizer.step()
    full_bytes = 3 * sum(p.numel() * p.element_size() for p in model.parameters())  # weights + Adam's 2 moments

    root = Path(tempfile.gettempdir()) / "kubetune-bench-checkpoint"
    state = CheckpointState(step=1, epoch=0, step_in_epoch=1, total_steps=1, world_size=info.world_size, lora=False)
    dist.barrier()
    sharded = peak_growth(
        lambda: save_checkpoint(
            root, state=state, model=model, optimizer=optimizer, scheduler=scheduler, dist_info=info
        )
    )
    dist.barrier()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    gathered = peak_growth(
        lambda: (
            get_model_state_dict(model, options=options),
            get_optimizer_state_dict(model, optimizer, options=options),
        )
    )
    rows: list[tuple[int, int, int]] | None = [(0, 0, 0)] * info.world_size if info.is_main else None
    dist.gather_object((info.rank, sharded, gathered), rows, dst=0)
    if rows is not None:
        mib = 1024 * 1024
        print(f"full state (weights + AdamW moments): {full_bytes / mib:.1f} MiB over {info.world_size} ranks")
        print(
            "| rank | sharded DCP save: peak RSS growth | full gather (baseline) | sharded / full | sharded / gather |"
        )
        print("| --- | --- | --- | --- | --- |")
        for rank, grew, baseline in sorted(rows):
            print(
                f"| {rank} | {grew / mib:.1f} MiB | {baseline / mib:.1f} MiB | {grew / full_bytes:.2f} | "
                f"{grew / max(baseline, 1):.2f} |"
            )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
