"""Every module of the operator and the trainer sits in a layer of its package's import-linter contract.

A module outside every layer is unconstrained: it could import anything and be imported by anything,
which is how the design's layers erode. `make test` runs the contracts; this test keeps them whole.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _layered_modules(container: str) -> set[str]:
    contracts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers" and c.get("containers") == [container])
    return {name.strip("() ") for layer in layers for name in re.split(r"[|:]", layer)}


@pytest.mark.parametrize("container", ["kubetune_operator", "kubetune_trainer"])
def test_every_top_level_module_is_in_a_layer(container: str) -> None:
    package = importlib.import_module(container)
    modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert modules, container
    missing = sorted(modules - _layered_modules(container))
    assert not missing, f"{container}: modules in no import-linter layer (pyproject.toml): {missing}"
