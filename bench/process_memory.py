"""A benchmark process's own memory: CUDA's allocator on a GPU, the process's RSS on a CPU.

    before = memory_mark()    # now, and the peak counter reset (CUDA)
    ...                       # the measured work
    peak = peak_memory()      # the peak since the mark (CUDA); the process's lifetime peak RSS (CPU)

On a CPU the RSS follows the live bytes only under `MALLOC_MMAP_THRESHOLD_` (docs/performance.md).
"""

# ruff: noqa: PLC0415 - torch is imported by the measuring processes only.

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    """This process's resident set now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_mark() -> int:
    """Bytes in use now (CUDA: allocated, after a sync, with the peak counter reset; CPU: RSS)."""
    import torch

    if not torch.cuda.is_available():
        return rss_bytes()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return int(torch.cuda.memory_allocated())


def peak_memory() -> int:
    """The peak since `memory_mark` (CUDA: max allocated; CPU: the process's peak RSS, getrusage)."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def train_on_one_row(
    model: Any, ids: Any, *, steps: int, autocast: Any, learning_rate: float = 1e-4
) -> dict[str, float]:
    """AdamW on `model`'s trainable parameters, forward and backward on the one row `ids`, `steps` timed
    steps after one warm-up (the optimizer state and the allocator's first pages): time per step, the
    peak over the memory before the warm-up, and the last loss."""
    import torch

    cuda = ids.device.type == "cuda"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)

    def step() -> float:
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    before = memory_mark()
    step()
    if cuda:
        torch.cuda.synchronize()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    losses = [step() for _ in range(steps)]
    if cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    peak = peak_memory()
    return {
        "device": 1.0 if cuda else 0.0,
        "ms_per_step": 1000 * wall / steps,
        "cpu_s_per_step": cpu / steps,
        "peak_over_start_mb": (peak - before) / 2**20,
        "peak_mb": peak / 2**20,
        "last_loss": losses[-1],
    }
