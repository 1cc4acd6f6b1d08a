"""The written tensors back into the ranks' own shards, one tensor at a time, for the output verification.

Rank 0 (the only rank sure to see the folder: other nodes have their own disks) reads each
tensor from the files and scatters it (`distribute_tensor` from rank 0): every rank receives
its own slice into the shard it already holds. No rank ever holds more than one whole tensor
beside its shard. Before any tensor moves, rank 0 checks the files against what is expected
(every name present, nothing extra, each shape and dtype) and all ranks learn the verdict, so a
damaged folder fails every rank the same way instead of leaving some in a collective.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch.distributed.tensor import DTensor, distribute_tensor

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class ReloadTarget:
    """A name in the saved files and the model tensor (a shard under FSDP2) its values go into."""

    name: str
    tensor: torch.Tensor


def file_problem(files: dict[str, Path], targets: Sequence[ReloadTarget], *, dtypes: bool = True) -> str | None:
    """What is wrong with the files against `targets` (missing, unexpected, other shape or dtype); None if nothing."""
    expected = {target.name: target.tensor for target in targets}
    missing = sorted(set(expected) - set(files))
    unexpected = sorted(set(files) - set(expected))
    if missing or unexpected:
        return (
            f"the saved weights lack {missing[:5]} ({len(missing)} in all) "
            f"and add {unexpected[:5]} ({len(unexpected)} in all)"
        )
    with ExitStack() as stack:
        handles = {path: stack.enter_context(safe_open(str(path), framework="pt")) for path in set(files.values())}
        for name, tensor in expected.items():
            header = handles[files[name]].get_slice(name)
            shape, dtype = tuple(header.get_shape()), _SAFETENSORS_DTYPES.get(header.get_dtype())
            if shape != tuple(tensor.shape) or (dtypes and dtype != tensor.dtype):
                return (
                    f"the saved tensor {name} is {dtype} {list(shape)}, "
                    f"the model's is {tensor.dtype} {list(tensor.shape)}"
                )
    return None


def agreed(problem: str | None) -> str | None:
    """Rank 0's `problem`, on every rank (a collective; itself without a process group)."""
    if not dist.is_initialized():
        return problem
    box: list[Any] = [problem]
    dist.broadcast_object_list(box, src=0)
    return box[0] if box[0] is None else str(box[0])


def load_into_shards(files: dict[str, Path], targets: Sequence[ReloadTarget], *, reads: bool) -> None:
    """Copy each saved tensor into its target, rank 0 reading (`reads`) and scattering; a collective.

    Each file is opened for one tensor and closed again: safetensors maps the file, and mapped
    pages once read stay in the process's RSS while the file is open.
    """
    with torch.no_grad():
        for target in targets:
            if reads:
                with safe_open(str(files[target.name]), framework="pt") as handle:
                    whole = handle.get_tensor(target.name)
            else:
                whole = torch.empty(tuple(target.tensor.shape), dtype=target.tensor.dtype)
            _copy_into(target.tensor, whole)
            del whole


def _copy_into(tensor: torch.Tensor, whole: torch.Tensor) -> None:
    if isinstance(tensor, DTensor):
        local = distribute_tensor(
            whole.to(tensor.device), tensor.device_mesh, list(tensor.placements), src_data_rank=0
        ).to_local()
        tensor.to_local().copy_(local)
        return
    moved = whole.to(tensor.device)
    if dist.is_initialized():
        dist.broadcast(moved, src=0)
    tensor.copy_(moved)
