"""A module class given another forward: one subclass per (class, forward), swapped onto instances.

Setting an instance's `__class__` to a subclass of its own class changes only what the subclass
overrides (here `forward`): `isinstance`, the state dict, saving and the libraries that made the
module (peft's merge and unload, transformers' loading) still see the class they made.
`training.lora_fused` and `training.lean_layers` swap their forwards this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_SUBCLASSES: dict[tuple[type, Callable[..., Any]], type] = {}


def with_forward(own: type, forward: Callable[..., Any], *, name: str) -> Any:
    """`own`'s subclass whose forward is `forward`, named `name`, made once; `own` itself when it already
    is that subclass (a module swapped before is not wrapped twice)."""
    if own in _SUBCLASSES.values() and getattr(own, "forward", None) is forward:
        return own
    key = (own, forward)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(name, (own,), {"forward": forward, "__module__": forward.__module__})
    return _SUBCLASSES[key]
