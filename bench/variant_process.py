"""One benchmark variant in a process of its own: the script re-run with --run-variant, its figures read back.

Each variant prints one line `FIGURES <json>`; a variant that fails or prints none ends the benchmark
with its output, so a broken variant is never reported as a figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


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
