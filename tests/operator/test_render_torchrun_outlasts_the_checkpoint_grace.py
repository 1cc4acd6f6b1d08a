"""torchrun's agent waits out the trainer's SIGTERM budget before it SIGKILLs the workers.

On SIGTERM the agent forwards the signal and SIGKILLs its workers after `--shutdown-timeout`
(30 s when not given). An operator that raises `checkpointGraceSeconds` (AWS Spot gives two
minutes) must see its workers use that budget: the checkpoint and the Result, not a SIGKILL at
30 s. The timeout stays within the pod's terminationGracePeriodSeconds.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_operator.render import render_attempt

from .core_builders import JOB, SETTINGS, resolved


def _pod(grace: int, margin: int) -> dict[str, Any]:
    settings = SETTINGS.model_copy(update={"checkpoint_grace_seconds": grace, "termination_margin_seconds": margin})
    (job,) = [o for o in render_attempt(resolved(), job=JOB, attempt=1, settings=settings) if o["kind"] == "Job"]
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize(("grace", "margin", "shutdown"), [(25, 30, 30), (120, 30, 125), (120, 2, 122)])
def test_the_agent_waits_the_budget_and_the_kubelet_waits_longer(grace: int, margin: int, shutdown: int) -> None:
    pod = _pod(grace, margin)
    command = pod["containers"][0]["command"]

    assert command[command.index("--shutdown-timeout") + 1] == str(shutdown)
    assert grace < shutdown <= pod["terminationGracePeriodSeconds"]
