"""A benchmark process's own memory: CUDA's allocator on a GPU, the process's RSS on a CPU.

    before = memory_mark()    # now, and the peak counter reset (CUDA)
    ...                       # the measured work
    peak = peak_memory()      # the peak since the mark (CUDA); the process's lifetime peak RSS (CPU)

On a CPU the RSS follows the live bytes only under `MALLOC_MMAP_THRESHOLD_` (docs/performance.md).
"""

# ruff: noqa: PLC0415 - torch is imported by the measuring processes only.

from __future__ import annotations

import resource
from pathlib import Path


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
