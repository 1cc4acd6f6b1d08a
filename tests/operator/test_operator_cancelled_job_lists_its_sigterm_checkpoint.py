"""A cancelled running job lists the checkpoint its trainer wrote on SIGTERM.

The cancel deletes the attempt's Job; its pod, SIGTERMed, checkpoints and reports the checkpoint
in `progress.recentCheckpoints` (the trainer's side: tests/trainer/test_sigterm_checkpoint_is_reported.py)
after the job is already Cancelled. The operator still reads that report into status.checkpoints
(Cancelled keeps the record), and announces it once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import CheckpointReport, Progress, Stage

from .cluster_actors import NAMESPACE, Actors, wait_for
from .conftest import EVENTS, JOBS, RunningOperator, status_of
from .journeys import to_running

DONE = [Stage.DATA_DOWNLOAD, Stage.INITIALIZATION]


def _progress(step: int, saved: list[int]) -> Progress:
    now = datetime.now(tz=UTC)
    return Progress(
        step=step,
        total_steps=100,
        heartbeat_time=now,
        recent_checkpoints=[CheckpointReport(step=s, time=now) for s in saved],
    )


async def test_the_checkpoint_written_on_sigterm_after_a_cancel_is_listed(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await to_running(cluster, actors, "long-run")
    await actors.report("long-run", Stage.TRAINING, done=DONE, progress=_progress(4, [4]))
    await wait_for(lambda: [c["step"] for c in status_of(cluster, "long-run").get("checkpoints", [])] == [4])

    await actors.patch_job_spec("long-run", {"cancel": True})
    await wait_for(lambda: status_of(cluster, "long-run").get("phase") == "Cancelled", what="Cancelled")
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "long-run-a1") is None, what="the attempt's Job deleted")

    # The SIGTERMed trainer: the checkpoint of the step it was in, then its report.
    await actors.report("long-run", Stage.TRAINING, done=DONE, progress=_progress(7, [4, 7]))
    listed = await wait_for(
        lambda: (
            [c["step"] for c in status_of(cluster, "long-run").get("checkpoints", [])] == [4, 7]
            and status_of(cluster, "long-run")["checkpoints"]
        ),
        what="the SIGTERM checkpoint in status.checkpoints",
    )
    assert listed[-1]["attempt"] == 1
    assert listed[-1]["uri"].startswith("pvc://checkpoints/long-run/")
    assert status_of(cluster, "long-run")["phase"] == "Cancelled", "still Cancelled"
    saved = await wait_for(
        lambda: (
            [e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE) if e["reason"] == "CheckpointSaved"]
            if any("step 7" in e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE))
            else None
        ),
        what="the CheckpointSaved Event of step 7",
    )
    assert sum("step 7" in m for m in saved) == 1
