"""bench/gpu_throughput.py --tiny: the GPU benchmark's whole plumbing (job, both trainers, table, ratios) on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO


def test_the_tiny_run_prints_the_table_the_ratios_and_the_paths(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu_throughput.py"),
            "--tiny",
            "--steps",
            "6",
            "--batch-size",
            "2",
            "--micro-batch",
            "1",
            "--variants",
            "hf-padded,kubetune",
            "--workdir",
            str(tmp_path / "job"),
            "--json",
            str(figures),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| variant | useful tok/s | MFU | peak GPU memory | peak RSS | last loss |" in out
    assert "| hf-padded |" in out
    assert "| kubetune |" in out
    assert "kubetune / hf-padded: tok/s " in out
    # The attention kernel kubetune chose, and why not the GPU ones: this is a CPU.
    assert "kubetune: " in out
    assert "attention: sdpa (per example), template asked auto" in out
    # The plan each kubetune run made, to hold its measured peak against (on a CPU: one sequence).
    assert "memory plan: budget " in out
    assert "(cpu)" in out
    # On a CPU there is no MFU and no GPU memory, never a made-up figure.
    assert "| n/a | n/a |" in out
    assert "device: cpu" in out
    assert figures.is_file()
