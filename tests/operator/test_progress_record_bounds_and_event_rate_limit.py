"""status.checkpoints and status.evalHistory stay bounded; progress Events are rate-limited, the latest wins.

Pure: the trainer's `progress.recentCheckpoints` / `progress.recentEvals` go in, the status lists and
the Events come out, under a fake clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubetune_operator.api.status import FineTuneJobStatus, Phase
from kubetune_operator.lifecycle.progress_record import (
    CHECKPOINTS_KEPT,
    EVALS_KEPT,
    progress_events,
    with_reports,
)
from kubetune_trainer.contract import CheckpointReport, EvalReport, Progress

T0 = datetime(2026, 1, 1, tzinfo=UTC)
URI = "s3://bucket/ckpt/chat"


def _progress(step: int, *, checkpoint: int | None = None, evaluated: tuple[int, float] | None = None) -> Progress:
    at = T0 + timedelta(seconds=step)
    saved = (
        CheckpointReport(step=checkpoint, epoch=checkpoint / 10, train_loss=2.0, eval_loss=None, time=at)
        if checkpoint is not None
        else None
    )
    last_eval = EvalReport(step=evaluated[0], eval_loss=evaluated[1], time=at) if evaluated is not None else None
    return Progress(
        step=step,
        total_steps=1000,
        epoch=step / 10,
        loss=1.5,
        recent_checkpoints=[saved] if saved is not None else [],
        recent_evals=[last_eval] if last_eval is not None else [],
    )


def _seen(status: FineTuneJobStatus, progress: Progress) -> FineTuneJobStatus:
    """What a reconcile stores: the trainer's progress, then the operator's records of it."""
    status = status.model_copy(update={"progress": progress})
    return status.model_copy(update=with_reports(status, progress, uri=URI, attempt=1))


def test_a_reported_checkpoint_is_listed_once_with_its_epoch_loss_and_location() -> None:
    status = _seen(FineTuneJobStatus(phase=Phase.RUNNING), _progress(10, checkpoint=10))
    status = _seen(status, _progress(12, checkpoint=10))  # the same checkpoint, carried by a later report
    assert [(c.step, c.epoch, c.train_loss, c.uri, c.attempt) for c in status.checkpoints] == [(10, 1.0, 2.0, URI, 1)]
    wire = status.to_wire()["checkpoints"][0]
    assert {"step", "epoch", "trainLoss", "uri", "time"} <= wire.keys()


def test_checkpoints_keep_the_newest_twenty_and_evaluations_the_newest_fifty() -> None:
    status = FineTuneJobStatus(phase=Phase.RUNNING)
    for step in range(1, 61):
        status = _seen(status, _progress(step, checkpoint=step, evaluated=(step, 3.0 - step / 100)))
    assert len(status.checkpoints) == CHECKPOINTS_KEPT == 20
    assert [c.step for c in status.checkpoints] == list(range(41, 61))
    assert len(status.eval_history) == EVALS_KEPT == 50
    assert [e.step for e in status.eval_history] == list(range(11, 61))
    assert status.eval_history[-1].eval_loss == 3.0 - 60 / 100


def test_one_event_of_each_kind_per_interval_and_the_latest_wins() -> None:
    status = _seen(FineTuneJobStatus(phase=Phase.RUNNING), _progress(10, checkpoint=10, evaluated=(10, 2.5)))
    events, announced, wait = progress_events(status, now=T0, interval=60)
    assert [(e.reason, e.message) for e in events] == [
        ("CheckpointSaved", f"checkpoint of step 10 saved in {URI}"),
        ("EpochCompleted", "epoch 1 completed at step 10, train loss 1.5000"),
        ("EvaluationCompleted", "evaluation at step 10: eval loss 2.5000"),
    ]
    status = status.model_copy(update={"announced": announced})
    assert wait is None

    # 10 s later: two more checkpoints, an epoch and an evaluation; nothing is posted, a look again asked for.
    for step in (20, 30):
        status = _seen(status, _progress(step, checkpoint=step, evaluated=(step, 2.0)))
    events, announced, wait = progress_events(status, now=T0 + timedelta(seconds=10), interval=60)
    assert events == []
    assert wait == 50
    assert announced == status.announced

    # When the window reopens, one Event per kind tells the latest.
    events, announced, wait = progress_events(status, now=T0 + timedelta(seconds=60), interval=60)
    assert [(e.reason, e.message) for e in events] == [
        ("CheckpointSaved", f"checkpoint of step 30 saved in {URI}"),
        ("EpochCompleted", "epoch 3 completed at step 30, train loss 1.5000"),
        ("EvaluationCompleted", "evaluation at step 30: eval loss 2.0000"),
    ]
    assert wait is None
    status = status.model_copy(update={"announced": announced})

    # Nothing new: nothing posted, however much later.
    events, _, wait = progress_events(status, now=T0 + timedelta(hours=5), interval=60)
    assert (events, wait) == ([], None)


def test_a_flood_of_checkpoints_posts_at_most_one_event_per_interval() -> None:
    status = FineTuneJobStatus(phase=Phase.RUNNING)
    posted: list[str] = []
    # One checkpoint every second for ten minutes, a reconcile after each.
    for second in range(600):
        status = _seen(status, _progress(second + 1, checkpoint=second + 1))
        events, announced, _ = progress_events(status, now=T0 + timedelta(seconds=second), interval=60)
        posted += [e.message for e in events if e.reason == "CheckpointSaved"]
        status = status.model_copy(update={"announced": announced})
    assert len(posted) == 10
    assert posted[0] == f"checkpoint of step 1 saved in {URI}"
    assert posted[-1] == f"checkpoint of step 541 saved in {URI}"


def test_every_checkpoint_a_report_carries_is_listed_even_when_passes_are_missed() -> None:
    at = T0
    saved = [CheckpointReport(step=s, epoch=s / 10, train_loss=1.0, time=at) for s in (2, 4, 6)]
    evals = [EvalReport(step=s, eval_loss=2.0 - s / 10, time=at) for s in (0, 3, 6)]
    progress = Progress(step=6, total_steps=6, epoch=0.6, recent_checkpoints=saved, recent_evals=evals)
    status = _seen(FineTuneJobStatus(phase=Phase.RUNNING), progress)
    assert [c.step for c in status.checkpoints] == [2, 4, 6]
    assert [(e.step, e.eval_loss) for e in status.eval_history] == [(0, 2.0), (3, 1.7), (6, 1.4)]
    # A job without a checkpoint location lists none (it has nowhere to resume from).
    without = FineTuneJobStatus(phase=Phase.RUNNING)
    assert "checkpoints" not in with_reports(without, progress, uri=None, attempt=1)
