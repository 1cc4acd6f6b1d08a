"""Stopping the sandbox mid-training leaves no process behind, torchrun's workers included.

torchrun starts each worker in a session of its own, so killing a pod's process group reaches the
agent only; the sandbox must still end every process a pod started, as a container runtime does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kubetune_trainer.faults import Fault, FaultPlan

from .host_processes import kill_all, processes_under
from .models import E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import FaultsByJob, e2e_sandbox


async def test_a_sandbox_stopped_mid_training_leaves_no_trainer_process(tmp_path: Path, e2e_models: E2eModels) -> None:
    faults = FaultsByJob({("held", 1): FaultPlan(faults=(Fault(kind="stall", step=1, seconds=300),))})
    workdir = tmp_path / "sandbox"
    worker_seen = False
    try:
        async with e2e_sandbox(workdir, e2e_models, faults=faults) as running:
            data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="t.jsonl")
            await running.view.create(finetunejob("held", tiny_spec(data)))
            await running.view.wait_until(
                "held", lambda s: s.get("stage") == "Training", timeout=120, what="stage Training"
            )
            deadline = time.monotonic() + 30
            while not worker_seen and time.monotonic() < deadline:  # the agent's worker, running the trainer
                worker_seen = len(processes_under(running.sandbox.layout.pod_dir("default", "held-a1-"))) >= 2
                await asyncio.sleep(0.2)
    finally:
        left = processes_under(workdir)
        kill_all(left)

    assert worker_seen
    # e2e_sandbox itself fails when any process naming the workdir outlives the sandbox by 10 s.
    assert left == []
