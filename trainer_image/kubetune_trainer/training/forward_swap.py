"""A module class given another forward: one subclass per (class, forward), swapped onto instances.

Setting an instance's `__class__` to a subclass of its own class changes only what the subclass
overrides (here `forward`): `isinstance`, the state dict, saving and the libraries that made the
module (peft's merge and unload, transformers' loading) still see the class they made.
`training.lora_fused` and `training.lean_layers` swap their forwards this way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_SUBCLASSES: dict[tuple[type, Callable[..., Any]], type] = {}


def with_forward(own: type, forward: Callable[..., Any], *, name: str) -> Any:
    """`own`'s subclass whose forward is `forward`, named `name`, made once; `own` itself when it already
    is that subclass (a module swapped before is not wrapped twice)."""
    if own in _SUBCLASSES.values() and forward_of(own) is forward:
        return own
    key = (own, forward)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(name, (own,), {"forward": forward, "__module__": forward.__module__})
    return _SUBCLASSES[key]


def forward_of(cls: type) -> Any:
    """`cls`'s forward as it was written: transformers' decoder layers wrap every subclass's forward in
    their checkpointing wrapper (`GradientCheckpointingLayer.__init_subclass__`, with functools.wraps)."""
    return inspect.unwrap(getattr(cls, "forward", None) or (lambda: None))
