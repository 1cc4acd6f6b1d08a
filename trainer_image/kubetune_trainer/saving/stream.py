"""Gather, write, free: the output's safetensors files, one file's tensors at a time.

Every rank runs the same loop over the same plan (`shards.plan_shards`); each tensor's gather is
a collective, so the ranks meet tensor by tensor. Only the writing rank keeps what it gathered,
writes the file and lets it go before the next: its peak is one output file (plus safetensors'
copy of it while serializing) above the shard it trains with; the other ranks hold one tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.distributed.fsdp import FSDPModule

from .fail_together import ALONE, FailTogether
from .shards import SHARD_BYTES, OutputShard, TensorSize, plan_shards, write_index
from .sources import OutputTensor

SAFETENSORS_METADATA = {"format": "pt"}
"""What transformers records in every file it writes (and checks when it loads one)."""


def write_streamed(
    folder: Path,
    tensors: Sequence[OutputTensor],
    *,
    writes: bool,
    max_shard_bytes: int = SHARD_BYTES,
    together: FailTogether = ALONE,
) -> list[OutputShard]:
    """Write `tensors` as `model.safetensors` (or shards and their index) under `folder` where `writes`.

    A collective: every rank calls it with the same `tensors`; `writes` is true on one rank only. After
    each file every rank learns whether its write failed (`together`), and all stop there if it did.
    """
    by_name = {tensor.name: tensor for tensor in tensors}
    plan = plan_shards([TensorSize(t.name, t.numel, t.nbytes) for t in tensors], max_bytes=max_shard_bytes)
    for shard in plan:
        gathered: dict[str, torch.Tensor] = {}
        for name in shard.names:
            whole = by_name[name].gather(writes)
            if whole is not None:
                gathered[name] = whole.contiguous()
        with together.around():
            if writes:
                save_file(gathered, str(folder / shard.filename), metadata=SAFETENSORS_METADATA)
        del gathered
    with together.around():
        if writes:
            write_index(folder, plan, total_parameters=sum(t.numel for t in tensors))
    return plan


def reshard(model: Any) -> None:
    """Put every FSDP2 module back in its sharded state (a forward under no_grad leaves the root gathered),
    so the state dict holds the shards and the next forward gathers what they hold now."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def write_config(folder: Path, model: Any) -> None:
    """config.json and generation_config.json as `save_pretrained` writes them (dtype and architecture named)."""
    config = model.config
    config.dtype = str(model.dtype).removeprefix("torch.")
    # FSDP2 renames the class it shards (FSDPLlamaForCausalLM); transformers strips the prefix the same way.
    config.architectures = [type(model).__name__.removeprefix("FSDP")]
    config.save_pretrained(folder)
    if model.can_generate():
        model.generation_config.save_pretrained(folder)
