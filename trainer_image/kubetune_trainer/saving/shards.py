"""The output's safetensors files, planned from tensor names and sizes alone (the same on every rank).

The files and the index follow transformers' `save_pretrained`: one `model.safetensors` when
everything fits under the limit, else `model-0000i-of-0000n.safetensors` files, filled in order
up to the limit (a tensor larger than the limit gets a file of its own), and
`model.safetensors.index.json` mapping every tensor name to its file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SHARD_BYTES = 5 * 10**9
"""Largest safetensors file written (5 GB, as transformers and the Hugging Face Hub shard)."""

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorSize:
    """One tensor of the output: its saved name, element count and bytes."""

    name: str
    numel: int
    nbytes: int


@dataclass(frozen=True)
class OutputShard:
    """One file of the output and the tensors it holds, in writing order."""

    filename: str
    names: tuple[str, ...]
    nbytes: int


def plan_shards(tensors: Sequence[TensorSize], *, max_bytes: int = SHARD_BYTES) -> list[OutputShard]:
    """Group `tensors` into files of at most `max_bytes`, as huggingface_hub's splitter does.

    Tensors fill the current file in order; one that does not fit starts the next file, and one
    larger than the limit gets a file of its own at once (the file being filled continues after it).
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    groups: list[list[TensorSize]] = []
    current: list[TensorSize] = []
    filled = 0
    for tensor in tensors:
        if tensor.nbytes > max_bytes:
            groups.append([tensor])
            continue
        if filled + tensor.nbytes > max_bytes:
            groups.append(current)
            current, filled = [], 0
        current.append(tensor)
        filled += tensor.nbytes
    if current:
        groups.append(current)
    if len(groups) <= 1:
        only = groups[0] if groups else []
        return [OutputShard(WEIGHTS_NAME, tuple(t.name for t in only), sum(t.nbytes for t in only))]
    stem, suffix = WEIGHTS_NAME.rsplit(".", 1)
    return [
        OutputShard(
            f"{stem}-{number:05d}-of-{len(groups):05d}.{suffix}",
            tuple(t.name for t in group),
            sum(t.nbytes for t in group),
        )
        for number, group in enumerate(groups, start=1)
    ]


def write_index(folder: Path, shards: Sequence[OutputShard], *, total_parameters: int) -> Path | None:
    """`model.safetensors.index.json` for a sharded output (as transformers writes it); None for one file."""
    if len(shards) <= 1:
        return None
    index = {
        "metadata": {"total_parameters": total_parameters, "total_size": sum(s.nbytes for s in shards)},
        "weight_map": {name: shard.filename for shard in shards for name in shard.names},
    }
    path = folder / INDEX_NAME
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def files_of(folder: Path) -> dict[str, Path]:
    """Tensor name -> the file holding it, for an output folder with one file or an index."""
    index = folder / INDEX_NAME
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / filename for name, filename in weight_map.items()}
    from safetensors import safe_open  # noqa: PLC0415 (only readers need it)

    path = folder / WEIGHTS_NAME
    with safe_open(str(path), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), path)
