"""`python -m kubetune_operator` freezes what its startup made before it reconciles anything.

The imported modules (about 80,000 objects) live as long as the process; unfrozen, every full
collection walked them, a stall of about 25 ms on whichever job was being reconciled.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import kubetune_operator.__main__ as entry


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_the_operator_runs_with_its_startup_objects_frozen(
    monkeypatch: pytest.MonkeyPatch, unfrozen_afterwards: None
) -> None:
    seen: dict[str, Any] = {}

    async def run_operator(**kwargs: Any) -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["entry_frozen"] = any(obj is entry.main for obj in gc.get_objects())

    monkeypatch.setattr(entry, "run_operator", run_operator)
    gc.unfreeze()

    assert entry.main(["--server", "http://127.0.0.1:1", "--metrics-port", "0"], environ={}) == 0

    assert seen["frozen"] > 10_000, "the imported modules' objects are frozen before the operator runs"
    assert seen["entry_frozen"] is False, "the entry point itself is among them: no collection walks it"
