"""Checkpoints and evaluations the trainer reports, kept in bounded lists and told in rate-limited Events.

Rank 0 may patch only `status.progress`; every report carries its newest few checkpoints and
evaluations there (`progress.recentCheckpoints`, `progress.recentEvals`), and one with a new
checkpoint or evaluation is sent at once. The operator, owner of every other status field,
adds each new one to `status.checkpoints` (newest `CHECKPOINTS_KEPT`) and `status.evalHistory`
(newest `EVALS_KEPT`), and posts CheckpointSaved, EpochCompleted and EvaluationCompleted Events.

The rate limit, per job and per kind: at most one Event every
`settings.progressEventIntervalSeconds`. What happens inside the window is not lost but folded:
when it reopens, one Event tells the latest value (the latest wins), and a reconcile is
requested for that moment; a finished job's withheld Events are posted at once. The last Event
of each kind is remembered in `status.announced`, so the limit holds across reconciles and
operator restarts. Only more than the contract's RECENT_CHECKPOINTS checkpoints (RECENT_EVALS
evaluations) written between two passes of the operator would lose the oldest of them.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TypeVar

from kubetune_trainer.contract import Progress

from ..api.conditions import EventNote, Reason
from ..api.status import Announcement, Announcements, CheckpointRecord, EvalRecord, FineTuneJobStatus
from ..observe.pod_state import seconds_left

CHECKPOINTS_KEPT = 20
EVALS_KEPT = 50

_Kept = TypeVar("_Kept", CheckpointRecord, EvalRecord)


def kept_newest(records: list[_Kept], new: _Kept, *, keep: int) -> list[_Kept]:
    """`records` with `new` in place of any record of its step, ordered by step, the newest `keep` only."""
    merged = [r for r in records if r.step != new.step] + [new]
    merged.sort(key=lambda r: r.step)
    return merged[-keep:]


def with_reports(
    status: FineTuneJobStatus, progress: Progress, *, uri: str | None, attempt: int | None
) -> dict[str, object]:
    """The status changes that record the checkpoints and evaluations the progress carries, if new."""
    changes: dict[str, object] = {}
    checkpoints = status.checkpoints
    for saved in progress.recent_checkpoints:
        if uri is None or any(c.step == saved.step for c in checkpoints):
            continue
        record = CheckpointRecord(
            step=saved.step,
            uri=uri,
            time=saved.time,
            attempt=attempt,
            epoch=saved.epoch,
            train_loss=saved.train_loss,
            eval_loss=saved.eval_loss,
        )
        checkpoints = kept_newest(checkpoints, record, keep=CHECKPOINTS_KEPT)
        changes["checkpoints"] = checkpoints
    history = status.eval_history
    for evaluated in progress.recent_evals:
        if any(e.step == evaluated.step and e.eval_loss == evaluated.eval_loss for e in history):
            continue
        record_eval = EvalRecord(step=evaluated.step, eval_loss=evaluated.eval_loss, time=evaluated.time)
        history = kept_newest(history, record_eval, keep=EVALS_KEPT)
        changes["eval_history"] = history
    return changes


class _Due:
    """What progress Events may be posted now; the seconds until the next one may, if one waits."""

    def __init__(self, announced: Announcements | None, *, now: datetime, interval: float) -> None:
        self.announced = announced or Announcements()
        self.now, self.interval = now, interval
        self.wait: float | None = None
        self.events: list[EventNote] = []

    def offer(self, kind: str, value: float, note: EventNote) -> None:
        last: Announcement | None = getattr(self.announced, kind)
        if last is not None and value <= last.value:
            return
        left = seconds_left(last.time, self.interval, now=self.now) if last is not None else 0.0
        if left > 0:
            self.wait = left if self.wait is None else min(self.wait, left)
            return
        self.events.append(note)
        self.announced = self.announced.model_copy(update={kind: Announcement(value=value, time=self.now)})


def progress_events(
    status: FineTuneJobStatus, *, now: datetime, interval: float
) -> tuple[list[EventNote], Announcements | None, float | None]:
    """The Events due for the newest checkpoint, completed epoch and evaluation in `status`.

    Returns the Events, the memory to store in `status.announced`, and the seconds until a
    withheld Event may be posted (None: nothing withheld).
    """
    due = _Due(status.announced, now=now, interval=interval)
    progress = status.progress
    # Only what the trainer reported saving is announced (a failed attempt's Result step is listed, not told again).
    if progress is not None and progress.recent_checkpoints:
        step = progress.recent_checkpoints[-1].step
        uris = [c.uri for c in status.checkpoints if c.step == step]
        where = f" in {uris[0]}" if uris else ""
        due.offer(
            "checkpoint", step, EventNote.normal(Reason.CHECKPOINT_SAVED, f"checkpoint of step {step} saved{where}")
        )
    if progress is not None and progress.epoch is not None:
        # 1e-9: the epoch is a float sum; the last step of an epoch reports it within rounding.
        done = math.floor(progress.epoch + 1e-9)
        if done >= 1:
            loss = f", train loss {progress.loss:.4f}" if progress.loss is not None else ""
            of = ""
            if status.resolved is not None and status.resolved.hyperparameters is not None:
                of = f" of {status.resolved.hyperparameters.n_epochs}"
            note = EventNote.normal(Reason.EPOCH_COMPLETED, f"epoch {done}{of} completed at step {progress.step}{loss}")
            due.offer("epoch", done, note)
    if status.eval_history:
        latest = status.eval_history[-1]
        note = EventNote.normal(
            Reason.EVALUATION_COMPLETED, f"evaluation at step {latest.step}: eval loss {latest.eval_loss:.4f}"
        )
        due.offer("evaluation", latest.step, note)
    changed = due.announced if due.events else status.announced
    return due.events, changed, due.wait
