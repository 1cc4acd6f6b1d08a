"""Every collected test has exactly one tier (unit, integration or e2e); `slow` names modules that exist.

`make test-fast` selects by these markers (tests/tiers.py gives them at collection), so a test
without a tier, or a slow module renamed away from SLOW_MODULES, would silently change what the
inner loop runs.
"""

from __future__ import annotations

import pytest

from .conftest import REPO
from .tiers import SLOW_MODULES, TIERS


def test_every_collected_test_has_exactly_one_tier(request: pytest.FixtureRequest) -> None:
    for item in request.session.items:
        tiers = [tier for tier in TIERS[:3] if item.get_closest_marker(tier)]
        assert len(tiers) == 1, (item.nodeid, tiers)


def test_this_module_is_unit_and_not_slow(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("slow") is None


def test_every_slow_module_exists() -> None:
    assert sorted(m for m in SLOW_MODULES if not (REPO / m).is_file()) == []
