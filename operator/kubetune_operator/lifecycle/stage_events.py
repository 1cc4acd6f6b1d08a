"""Events for the trainer's stage transitions, announced once each.

The trainer patches `status.stage`/`status.stages`; the operator remembers the stage it last
announced in the Running condition's reason (a Stage name is CamelCase), so a restarted
operator neither repeats nor skips an announcement, and a progress tick never makes one.
"""

from __future__ import annotations

from kubetune_trainer.contract import Stage, StageRecord

from ..api.conditions import EventNote, Reason

_ORDER = list(Stage)


def announced_stage(running_reason: str | None) -> Stage | None:
    return Stage(running_reason) if running_reason in set(Stage) else None


def _position(stage: Stage | None) -> int:
    return _ORDER.index(stage) if stage is not None else -1


def stage_events(
    *,
    announced: Stage | None,
    current: Stage | None,
    stages: list[StageRecord],
    finished: bool = False,
) -> list[EventNote]:
    """The Events alone (see `stage_transitions`)."""
    events, _ = stage_transitions(announced=announced, current=current, stages=stages, finished=finished)
    return events


def stage_transitions(
    *,
    announced: Stage | None,
    current: Stage | None,
    stages: list[StageRecord],
    finished: bool = False,
) -> tuple[list[EventNote], list[Stage]]:
    """The Events between the stage last announced and `current`, one per transition, in order.

    Every reported stage after `announced` up to `current` has started; every one before
    `current` (and, when the run `finished`, `current` and any later one) has finished. A
    start carries the finishes that led to it ("stage Training started; Initialization
    finished in 3s"); finishes with no start after them (the run ended) make one StageFinished.
    """
    records = {record.name: record for record in stages}
    last = _position(announced)
    reached = _position(current)
    if finished:
        reached = max([reached, last, *(_position(name) for name in records)])
    if reached < 0:
        return [], []
    finishes_through = reached if finished else reached - 1
    events: list[EventNote] = []
    ended: list[str] = []
    done: list[Stage] = []
    for position in range(max(last, 0), reached + 1):
        stage = _ORDER[position]
        if stage not in records and stage != current:
            continue  # skipped by the trainer (e.g. no Upload for a pvc:// output)
        if position > last:
            events.append(EventNote.normal(Reason.STAGE_STARTED, "; ".join([f"stage {stage} started", *ended])))
            ended = []
        if position <= finishes_through:
            ended.append(_finish(stage, records.get(stage)))
            done.append(stage)
    if ended:
        events.append(EventNote.normal(Reason.STAGE_FINISHED, "stage " + "; ".join(ended)))
    return events, done


def _finish(stage: Stage, record: StageRecord | None) -> str:
    words = f"{stage} finished"
    if record is not None and record.start_time is not None and record.end_time is not None:
        words += f" in {max(0.0, (record.end_time - record.start_time).total_seconds()):.0f}s"
    if record is not None and record.message:
        words += f": {record.message}"
    return words
