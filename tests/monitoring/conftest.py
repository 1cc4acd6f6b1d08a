"""The operator fixtures (the API emulator and the players of the missing controllers), reused here."""

from __future__ import annotations

from ..operator.conftest import actors, cluster

__all__ = ["actors", "cluster"]
