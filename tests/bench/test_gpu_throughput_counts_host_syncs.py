"""bench/gpu_throughput.py --count-syncs: the host's waits for the GPU after the warm-up, per step and by line.

No GPU here: torch's sync debug mode is stood in for by the warning it raises, so what is tested is the
counting (which steps, which warnings, which lines), not torch's detection.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ..conftest import REPO


def _script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("gpu_throughput", REPO / "bench" / "gpu_throughput.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_throughput", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _synchronizing() -> None:
    warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)


def test_syncs_are_counted_per_step_after_the_warm_up_by_the_line_that_made_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = _script(monkeypatch)
    modes: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    count = script._SyncCount()
    for step in range(1, script.WARM_STEPS + 1):
        with pytest.warns(UserWarning, match="synchronizing"):  # warm-up steps are not watched: the warning passes
            _synchronizing()
        count.step_ended(step)
    assert modes == ["warn"]
    _synchronizing()
    _synchronizing()
    warnings.warn("another warning", UserWarning, stacklevel=1)
    count.step_ended(script.WARM_STEPS + 1)
    count.step_ended(script.WARM_STEPS + 2)

    summary = count.summary()
    assert count.per_step == [2, 0]
    assert modes == ["warn", "default"]
    assert summary.startswith("[2, 0] per step after the warm-up; from ")
    assert f"{Path(__file__).name}:" in summary
    assert summary.endswith(" x2")


def test_without_a_gpu_nothing_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    count = script._SyncCount()
    for step in range(1, script.WARM_STEPS + 3):
        count.step_ended(step)
    assert count.summary() == "n/a (no GPU)"
