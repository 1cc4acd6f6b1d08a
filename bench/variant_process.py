"""One benchmark variant in a process of its own: the script re-run with --run-variant, its figures read back.

Each variant prints one line `FIGURES <json>`; a variant that fails or prints none ends the benchmark
with its output, so a broken variant is never reported as a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_variant_options(parser: argparse.ArgumentParser, *, variants: Sequence[str] | None = None) -> None:
    """The hidden options `spawn_variant` gives a child: the variant to run (one of `variants`, when given)
    and the parent's work folder."""
    parser.add_argument("--run-variant", choices=variants, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)


def spawn_variant(
    script: str, name: str, *, workdir: Path, flags: list[str], environ: dict[str, str] | None = None
) -> dict[str, Any]:
    """`script --run-variant name --workdir workdir *flags`, offline and quiet, with `environ` added to this
    process's environment; its FIGURES as a dict."""
    command = [sys.executable, script, "--run-variant", name, "--workdir", str(workdir), *flags]
    child = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", **(environ or {})}
    done = subprocess.run(command, capture_output=True, text=True, env=child, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("FIGURES ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"variant {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(line.removeprefix("FIGURES "))
    return figures


def print_step_table(best: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The Markdown table of each (allocator, variant)'s training-step figures (`process_memory.train_on_one_row`);
    returns the key of the time figure it showed (ms per step on CUDA, CPU seconds per step on a CPU)."""
    cuda = next(iter(best.values()))["device"] == 1.0
    time_key, time_label = ("ms_per_step", "ms per step") if cuda else ("cpu_s_per_step", "CPU s per step")
    memory_label = "peak allocated MB" if cuda else "peak RSS MB"
    print(f"| allocator | variant | {time_label} | {memory_label} | of which over the model | last loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (allocator, name), figures in best.items():
        print(
            f"| {'cuda' if cuda else allocator} | {name} | {figures[time_key]:.2f} | {figures['peak_mb']:.0f} "
            f"| {figures['peak_over_start_mb']:.0f} | {figures['last_loss']:.4f} |"
        )
    return time_key
