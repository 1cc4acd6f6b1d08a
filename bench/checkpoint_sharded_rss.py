"""Peak RSS per rank of a sharded (DCP) checkpoint save and of the saved model's streamed write, against a
full-state gather (a script, not a test).

    MALLOC_MMAP_THRESHOLD_=131072 OMP_NUM_THREADS=1 \
        torchrun --standalone --nproc-per-node 4 bench/checkpoint_sharded_rss.py [--hidden 2048] [--layers 8] \
        [--output-file-mib 16]

(The fixed mmap threshold makes glibc return every large tensor's memory when it is freed, so
RSS follows the live tensors rather than the heap's high-water mark.) Every rank builds the same
stack of Linear layers on the meta device, shards it with FSDP2 (`fully_shard`, gloo on CPU) and
only then allocates its own shard (no rank ever holds the whole model), takes one AdamW step (so
the optimizer state exists) and then, in the same run:

1. the baseline: the full state gathered to every rank's CPU memory, as the trainer did before
   (`get_model_state_dict` / `get_optimizer_state_dict` with `full_state_dict=True, cpu_offload=True`);
2. the trainer's `save_checkpoint` (DCP: each rank writes its own shards);
3. the Saving stage's streamed write of the model (`saving.stream.write_streamed`: safetensors files
   of at most `--output-file-mib`, each file's tensors gathered one at a time, rank 0 writing), and
   its verification's reload of those files into the shards (`saving.reload.load_into_shards`).

A thread samples VmRSS every 2 ms during each; rank 0 prints, per rank, the growth over the RSS
before each (the memory the save itself took), the full state's size, and the ratio, then the
seconds each write took and its throughput (bytes written over the slowest rank's seconds). The
sharded saves run first, so the baseline's gathered tensors cannot have inflated their numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from kubetune_trainer.saving.reload import ReloadTarget, load_into_shards
from kubetune_trainer.saving.shards import files_of
from kubetune_trainer.saving.sources import full_model_tensors
from kubetune_trainer.saving.stream import write_streamed
from kubetune_trainer.training.checkpoint import CheckpointState, checkpoint_dir, save_checkpoint


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_growth(action: Callable[[], object]) -> tuple[int, float]:
    """Bytes of RSS above the level before `action`, at its highest while it ran, and its seconds."""
    start = _rss_bytes()
    began = time.monotonic()
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
    seconds = time.monotonic() - began
    running = False
    sampler.join()
    peak = max(peak, _rss_bytes())
    del kept
    return peak - start, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--output-file-mib", type=int, default=16)
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
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    full_bytes = 3 * weight_bytes  # weights + Adam's 2 moments

    root = Path(tempfile.gettempdir()) / "kubetune-bench-checkpoint"
    state = CheckpointState(step=1, epoch=0, step_in_epoch=1, total_steps=1, world_size=info.world_size, lora=False)
    dist.barrier()
    sharded, sharded_seconds = peak_growth(
        lambda: save_checkpoint(
            root, state=state, model=model, optimizer=optimizer, scheduler=scheduler, dist_info=info
        )
    )
    step = checkpoint_dir(root, 1)
    checkpoint_bytes = sum(p.stat().st_size for p in step.rglob("*") if p.is_file()) if info.is_main else 0
    dist.barrier()
    output = root / "saved-model"
    if info.is_main:
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir(parents=True)
    tensors = full_model_tensors(model)
    streamed, streamed_seconds = peak_growth(
        lambda: write_streamed(output, tensors, writes=info.is_main, max_shard_bytes=args.output_file_mib * 1024 * 1024)
    )
    dist.barrier()
    targets = [ReloadTarget(t.name, t.source) for t in tensors]
    reloaded, _ = peak_growth(
        lambda: load_into_shards(files_of(output) if info.is_main else {}, targets, reads=info.is_main)
    )
    dist.barrier()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    gathered, _ = peak_growth(
        lambda: (
            get_model_state_dict(model, options=options),
            get_optimizer_state_dict(model, optimizer, options=options),
        )
    )
    rows: list[tuple[int, ...]] | None = [()] * info.world_size if info.is_main else None
    figures = (info.rank, sharded, gathered, streamed, reloaded)
    dist.gather_object(figures, rows, dst=0)
    times: list[tuple[float, float]] | None = [(0.0, 0.0)] * info.world_size if info.is_main else None
    dist.gather_object((sharded_seconds, streamed_seconds), times, dst=0)
    if rows is not None and times is not None:
        _print_tables(
            rows,
            times,
            sizes=Sizes(full=full_bytes, weights=weight_bytes, checkpoint=checkpoint_bytes),
            output_file_mib=args.output_file_mib,
        )
    dist.destroy_process_group()


@dataclass(frozen=True)
class Sizes:
    full: int
    weights: int
    checkpoint: int


def _print_tables(
    rows: list[tuple[int, ...]], times: list[tuple[float, float]], *, sizes: Sizes, output_file_mib: int
) -> None:
    full_bytes, weight_bytes, checkpoint_bytes = sizes.full, sizes.weights, sizes.checkpoint
    world_size = len(rows)
    mib = 1024 * 1024
    print(f"full state (weights + AdamW moments): {full_bytes / mib:.1f} MiB over {world_size} ranks")
    print("| rank | sharded DCP save: peak RSS growth | full gather (baseline) | sharded / full | sharded / gather |")
    print("| --- | --- | --- | --- | --- |")
    for rank, grew, baseline, _, _ in sorted(rows):
        print(
            f"| {rank} | {grew / mib:.1f} MiB | {baseline / mib:.1f} MiB | {grew / full_bytes:.2f} | "
            f"{grew / max(baseline, 1):.2f} |"
        )
    print()
    print(f"saved model (weights only): {weight_bytes / mib:.1f} MiB, output files of at most {output_file_mib} MiB")
    print("| rank | streamed write: peak RSS growth | write / weights | reload into shards: peak RSS growth |")
    print("| --- | --- | --- | --- |")
    for rank, _, _, wrote, read in sorted(rows):
        print(f"| {rank} | {wrote / mib:.1f} MiB | {wrote / weight_bytes:.2f} | {read / mib:.1f} MiB |")
    checkpoint_seconds = max(t[0] for t in times)
    write_seconds = max(t[1] for t in times)
    print()
    print(
        f"DCP checkpoint: {checkpoint_bytes / mib:.1f} MiB in {checkpoint_seconds:.2f} s "
        f"({checkpoint_bytes / mib / checkpoint_seconds:.0f} MiB/s over {world_size} ranks); "
        f"streamed model write: {weight_bytes / mib:.1f} MiB in {write_seconds:.2f} s "
        f"({weight_bytes / mib / write_seconds:.0f} MiB/s, rank 0 writing)"
    )


if __name__ == "__main__":
    main()
