"""One sandbox per test module: the real operator and trainer, the pods as local processes.

`FaultsByJob` is the sandbox's `env_hook`: it gives the test-only fault variable
(`KUBETUNE_FAULT_INJECTION`) to the trainer pods of one job and attempt, as a test asks; the
operator never renders it, so a fault can only come from here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune_operator.render.labels import ATTEMPT_LABEL, COMPONENT_LABEL, JOB_LABEL, TRAINER
from kubetune_sandbox.control_plane import Sandbox
from kubetune_trainer.faults import FaultPlan

from .host_processes import kill_all, processes_under
from .models import E2eModels
from .user_view import UserView, user_view

OPERATOR_ENV = {
    # A retry starts a second after a failure instead of 30 s.
    "KUBETUNE_RETRY_BACKOFF_SECONDS": "1",
    # SIGTERM (eviction, suspend, delete) gives the trainer 5 s to checkpoint and write its Result.
    "KUBETUNE_CHECKPOINT_GRACE_SECONDS": "5",
    "KUBETUNE_TERMINATION_MARGIN_SECONDS": "10",
}
POD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
# The code under test: a checkout run with PYTHONPATH (a worktree beside an installed copy) runs its
# own operator and trainer in the sandbox's processes too, not the installed ones.
CODE_UNDER_TEST = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


@dataclass
class FaultsByJob:
    """(job name, attempt) -> the faults its trainer pods run with."""

    plans: dict[tuple[str, int], FaultPlan] = field(default_factory=dict)

    def __call__(self, pod: Mapping[str, Any]) -> Mapping[str, str]:
        labels = pod.get("metadata", {}).get("labels", {})
        if labels.get(COMPONENT_LABEL) != TRAINER:
            return {}
        plan = self.plans.get((labels.get(JOB_LABEL, ""), int(labels.get(ATTEMPT_LABEL, "0"))))
        return plan.to_env() if plan else {}


@dataclass(frozen=True)
class Running:
    sandbox: Sandbox
    view: UserView
    workdir: Path

    def volume(self, claim: str) -> Path:
        path: Path = self.sandbox.volume(claim)
        path.mkdir(parents=True, exist_ok=True)
        return path


@asynccontextmanager
async def e2e_sandbox(
    workdir: Path,
    models: E2eModels,
    *,
    operator_env: Mapping[str, str] | None = None,
    faults: FaultsByJob | None = None,
) -> AsyncIterator[Running]:
    sandbox = Sandbox(
        workdir,
        hf_home=models.hf_home,
        operator_env={**OPERATOR_ENV, **CODE_UNDER_TEST, **(operator_env or {})},
        pod_env={**POD_ENV, **CODE_UNDER_TEST},
        env_hook=faults,
    )
    async with sandbox, user_view(sandbox.kubeconfig, operator_log=workdir / "operator.log") as view:
        yield Running(sandbox, view, workdir)
    # A stopped sandbox leaves no process behind: not the operator, not a pod's, not a torchrun worker's.
    deadline = time.monotonic() + 10
    while (left := processes_under(workdir)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    kill_all(left)
    assert not left, f"processes left running after the sandbox stopped: {left}"
