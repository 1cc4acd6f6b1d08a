"""Saved tensors that backward recomputes instead of keeping: a registry, and the saved-tensor hooks that use it.

Autograd keeps every tensor an operation saves for backward until that backward runs. Some are cheap
to recompute from tensors autograd keeps anyway: an RMSNorm's output from its input and weight (which
the norm keeps), the SwiGLU product from gate and up (which silu's gradient keeps). Inside
`recomputing()`, a tensor registered with `recompute_later(tensor, recompute)` is packed, whenever an
operation saves it or a view of it, as the function that recomputes it and the view's geometry:
backward calls the function once for all the saves of one tensor and drops the result after the last.

A registered tensor is recognised by its storage's address while the tensor is alive (the registry
holds a weak reference, never the tensor): a tensor allocated later at a freed tensor's address is
not taken for it. Only the innermost saved-tensor hooks apply, so where another one is in force
(activation checkpointing's, whose packing frees what it saves) `recomputing()` yields None and
nothing is recomputed; inside our own, it yields the registry in force.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


class _Source:
    """One registered tensor: how to recompute it, and the recomputed value while saves still need it."""

    __slots__ = ("pending", "recompute", "tensor", "value")

    def __init__(self, tensor: torch.Tensor, recompute: Callable[[], torch.Tensor]) -> None:
        self.tensor = weakref.ref(tensor)
        self.recompute = recompute
        self.pending = 0
        """Saves packed and not yet unpacked: the recomputed value is dropped when the last one is."""
        self.value: torch.Tensor | None = None

    def unpacked(self) -> torch.Tensor:
        value = self.value
        if value is None:
            with torch.no_grad():
                value = self.recompute()
        self.pending -= 1
        self.value = value if self.pending > 0 else None
        return value


@dataclass(frozen=True)
class _Packed:
    source: _Source
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int


class Recomputed:
    """The tensors registered inside one `recomputing()` block, and its pack and unpack hooks."""

    def __init__(self) -> None:
        self._sources: dict[tuple[int, torch.dtype], _Source] = {}

    def add(self, tensor: torch.Tensor, recompute: Callable[[], torch.Tensor]) -> bool:
        """Register `tensor` (laid out as `recompute` makes it: contiguous, from its storage's start)."""
        if not tensor.is_contiguous() or tensor.storage_offset() != 0 or tensor.numel() == 0:
            return False
        self._sources[(tensor.untyped_storage().data_ptr(), tensor.dtype)] = _Source(tensor, recompute)
        return True

    def pack(self, saved: torch.Tensor) -> torch.Tensor | _Packed:
        source = self._sources.get((saved.untyped_storage().data_ptr(), saved.dtype))
        if source is None or source.tensor() is None:
            return saved
        source.pending += 1
        return _Packed(source, tuple(saved.size()), tuple(saved.stride()), int(saved.storage_offset()))

    def unpack(self, packed: torch.Tensor | _Packed) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        return packed.source.unpacked().as_strided(packed.size, packed.stride, packed.offset)

    def close(self) -> None:
        """The block ended: nothing more is packed (what was packed keeps its own sources)."""
        self._sources.clear()


_ACTIVE: list[Recomputed] = []


def _top_hooks() -> object:
    # torch has no public reader of the hooks in force; without this one, never hook.
    reader = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return reader(True) if reader is not None else ("unknown",)


def _in_force() -> Recomputed | None:
    """The registry whose hooks are the innermost in force, if one of ours is."""
    if not _ACTIVE:
        return None
    top = _top_hooks()
    registry = _ACTIVE[-1]
    return registry if top == (registry.pack, registry.unpack) else None


@contextmanager
def recomputing() -> Iterator[Recomputed | None]:
    """Within: tensors registered with the yielded registry are recomputed in backward, not kept. The
    registry in force when one of ours is; None where grad is off or another saved-tensor hook is in force."""
    current = _in_force()
    if current is not None:
        yield current
        return
    if not torch.is_grad_enabled() or _top_hooks() is not None:
        yield None
        return
    registry = Recomputed()
    _ACTIVE.append(registry)
    try:
        with torch.autograd.graph.saved_tensors_hooks(registry.pack, registry.unpack):
            yield registry
    finally:
        _ACTIVE.pop()
        registry.close()


def recompute_later(tensor: torch.Tensor, recompute: Callable[[], torch.Tensor]) -> bool:
    """Register `tensor` with the registry in force, if one of ours is; whether it was registered."""
    registry = _in_force()
    return registry is not None and registry.add(tensor, recompute)
