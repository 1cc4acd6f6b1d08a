"""The throughput benches count the steps after five warm-up steps: fewer steps are refused in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import REPO


@pytest.mark.parametrize("script", ["trainer_throughput.py", "gpu_throughput.py"])
@pytest.mark.parametrize("steps", ["1", "3", "5"])
def test_too_few_steps_is_one_line_naming_steps_and_its_minimum(script: str, steps: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--steps", steps],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--steps must be at least 6" in done.stderr
    assert f"got {steps}" in done.stderr
    assert "Traceback" not in done.stderr
