"""End-to-end fixtures: the models every job trains on, built once per session."""

from __future__ import annotations

import pytest

from .models import E2eModels, build_models


@pytest.fixture(scope="session")
def e2e_models(tmp_path_factory: pytest.TempPathFactory) -> E2eModels:
    return build_models(tmp_path_factory.mktemp("e2e-models"))
