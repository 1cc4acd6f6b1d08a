"""Events for the trainer's stage transitions, announced once each.

The trainer patches `status.stage`/`status.stages`; the operator remembers the stage it last
announced in the Running condition's reason (a Stage name is CamelCase), so a restarted
operator neither repeats nor skips an announcement, and a progress tick never makes one.
"""

from __future__ import annotations

from kubetune_trainer.contract import Stage, StageRecord

from .api.conditions import EventNote, Reason

_ORDER = list(Stage)


def announced_stage(running_reason: str | None) -> Stage | None:
    return Stage(running_reason) if running_reason in set(Stage) else None


def stage_events(
    *,
    announced: Stage | None,
    current: Stage | None,
    stages: list[StageRecord],
    finished: bool = False,
) -> list[EventNote]:
    """Events from `announced` up to `current` (or, when `finished`, through every reported stage)."""
    start = _ORDER.index(announced) if announced is not None else -1
    records = {record.name: record for record in stages}
    if finished:
        end = max([_ORDER.index(r.name) for r in stages] + [start, _ORDER.index(current) if current else -1]) + 1
    elif current is None:
        return []
    else:
        end = _ORDER.index(current)
    events: list[EventNote] = []
    for index in range(max(start, 0), end):
        stage = _ORDER[index]
        if index > start and stage in records:
            events.append(EventNote.normal(Reason.STAGE_STARTED, f"stage {stage} started"))
        if index >= start and stage in records:
            detail = records[stage].message
            events.append(
                EventNote.normal(Reason.STAGE_FINISHED, f"stage {stage} finished" + (f": {detail}" if detail else ""))
            )
    if not finished and current is not None and _ORDER.index(current) > start:
        events.append(EventNote.normal(Reason.STAGE_STARTED, f"stage {current} started"))
    return events
