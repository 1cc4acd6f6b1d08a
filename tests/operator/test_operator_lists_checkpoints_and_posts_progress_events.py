"""The real operator turns the trainer's progress reports into status.checkpoints, status.evalHistory
and rate-limited CheckpointSaved / EpochCompleted / EvaluationCompleted Events."""

from __future__ import annotations

from datetime import UTC, datetime

from kubetune_operator.client.views import checkpoints_of
from kubetune_operator.settings import OperatorSettings
from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import CheckpointReport, EvalReport, Progress, Stage

from .cluster_actors import NAMESPACE, Actors, preflight_passed, trainer_succeeded, wait_for
from .conftest import EVENTS, FAST, FTJ, JOBS, RunningOperator, event_reasons, job_manifest, status_of

TRAINING_DONE = [Stage.DATA_DOWNLOAD, Stage.INITIALIZATION]


def _progress(step: int, *, loss: float, eval_loss: float) -> Progress:
    now = datetime.now(tz=UTC)
    return Progress(
        step=step,
        total_steps=10,
        epoch=step / 10,
        loss=loss,
        eval_loss=eval_loss,
        heartbeat_time=now,
        recent_checkpoints=[
            CheckpointReport(step=step, epoch=step / 10, train_loss=loss, eval_loss=eval_loss, time=now)
        ],
        recent_evals=[EvalReport(step=step, eval_loss=eval_loss, time=now)],
    )


def _messages(cluster: ApiEmulator, reason: str) -> list[str]:
    return [e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE) if e["reason"] == reason]


async def test_checkpoints_and_evaluations_are_listed_and_announced_within_the_rate_limit(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    window = OperatorSettings(**FAST).progress_event_interval_seconds
    assert window >= 30, "the test relies on a window longer than itself"
    await actors.apply_job(job_manifest("chat"))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "chat-preflight"), what="the preflight Job")
    (pod,) = await actors.start_pods("chat-preflight")
    await actors.terminate(pod, exit_code=0, message=preflight_passed())
    await actors.job_condition("chat-preflight", "Complete")
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "chat-a1"), what="the trainer Job")
    (trainer,) = await actors.start_pods("chat-a1")
    await actors.run(trainer)
    await wait_for(lambda: status_of(cluster, "chat").get("phase") == "Running", what="phase Running")

    await actors.report("chat", Stage.TRAINING, done=TRAINING_DONE, progress=_progress(5, loss=1.5, eval_loss=1.7))
    await wait_for(lambda: len(_messages(cluster, "EvaluationCompleted")) == 1, what="the first evaluation's Event")
    job = cluster.live(FTJ, NAMESPACE, "chat")
    assert job is not None
    where = f"pvc://checkpoints/chat/chat/{job['metadata']['uid']}"  # <root>/<job>/<uid>
    assert _messages(cluster, "CheckpointSaved") == [f"checkpoint of step 5 saved in {where}"]
    assert _messages(cluster, "EvaluationCompleted") == ["evaluation at step 5: eval loss 1.7000"]
    assert _messages(cluster, "EpochCompleted") == []  # half an epoch

    # Inside the window: listed at once, announced only later (the latest wins).
    await actors.report("chat", Stage.TRAINING, done=TRAINING_DONE, progress=_progress(10, loss=1.2, eval_loss=1.4))
    status = await wait_for(
        lambda: len(status_of(cluster, "chat").get("checkpoints", [])) == 2 and status_of(cluster, "chat"),
        what="the second checkpoint listed",
    )
    assert [(c["step"], c["trainLoss"], c["evalLoss"]) for c in status["checkpoints"]] == [
        (5, 1.5, 1.7),
        (10, 1.2, 1.4),
    ]
    assert [(e["step"], e["evalLoss"]) for e in status["evalHistory"]] == [(5, 1.7), (10, 1.4)]
    assert _messages(cluster, "CheckpointSaved") == [f"checkpoint of step 5 saved in {where}"]

    # The job succeeds: what the window withheld is told once, and the checkpoints stay listed.
    await actors.terminate(trainer, exit_code=0, message=trainer_succeeded(checkpoint_step=10))
    await actors.job_condition("chat-a1", "Complete")
    await wait_for(lambda: "Completed" in event_reasons(cluster, "chat"), what="the job Completed")
    await wait_for(lambda: len(_messages(cluster, "CheckpointSaved")) == 2, what="the withheld checkpoint Event")
    await wait_for(lambda: len(_messages(cluster, "EvaluationCompleted")) == 2, what="the withheld evaluation Event")
    assert _messages(cluster, "CheckpointSaved")[-1] == f"checkpoint of step 10 saved in {where}"
    assert _messages(cluster, "EpochCompleted") == ["epoch 1 of 1 completed at step 10, train loss 1.2000"]
    assert _messages(cluster, "EvaluationCompleted")[-1] == "evaluation at step 10: eval loss 1.4000"

    job = cluster.live(FTJ, NAMESPACE, "chat")
    assert job is not None
    listed = [(c.step, c.train_loss, c.eval_loss) for c in checkpoints_of(job) if c.step is not None]
    assert listed == [(10, 1.2, 1.4), (5, 1.5, 1.7)], "newest first, as `kubetune jobs checkpoints` prints them"
