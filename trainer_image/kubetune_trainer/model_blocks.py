"""A model's repeated blocks as transformers names them: the units FSDP2 shards and the faults address."""

from __future__ import annotations

from torch import nn


def no_split_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's decoder layers in order: the modules of the classes it names as never to be split
    (`_no_split_modules`), or of their subclasses (FSDP2 subclasses a sharded layer's class, and
    `training.lean_layers` swaps the layers onto subclasses of their own)."""
    declared = (getattr(module, "_no_split_modules", None) for module in model.modules())
    names: set[str] = next((set(found) for found in declared if found), set())
    return [module for module in model.modules() if any(cls.__name__ in names for cls in type(module).__mro__)]
