"""The throughput benches' warm-up: the first steps are left out of every figure, so a run needs more.

Allocator warm-up and first-call overheads make the first steps slow; tokens and seconds are counted
from the end of the last warm-up step to the end of the run.
"""

from __future__ import annotations

from pathlib import Path

WARM_STEPS = 5
"""Steps left out of the throughput figures."""


def too_few_steps(script: str, steps: int) -> str | None:
    """The one-line refusal of a `--steps` that leaves no step to count, else None."""
    if steps > WARM_STEPS:
        return None
    return (
        f"{Path(script).name}: --steps must be at least {WARM_STEPS + 1} (the first {WARM_STEPS} are warm-up, "
        f"left out of the figures); got {steps}"
    )
