"""One reconcile of the pure core: parse the spec, resolve it, advance the state machine.

The handlers gather what a pass needs from their indexes (templates, the preflight's and the
current attempt's Jobs and pods), call `observe` and `resolve_for`, then `transitions.advance`;
`reconcile_step` is the same sequence in one call, for tests of the pure core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..api.resources import BaseModelTemplate
from ..api.spec import FineTuneJobSpec
from ..api.status import FineTuneJobStatus
from ..observe.observation import Observation
from ..resolve.resolution import CheckpointSource, Resolution, parse_spec, resolve_job
from ..settings import OperatorSettings
from .transitions import JobFacts, Step, advance


def resolve_for(
    *,
    job: JobFacts,
    raw_spec: Mapping[str, Any],
    status: FineTuneJobStatus,
    templates: Sequence[BaseModelTemplate],
    observation: Observation,
    settings: OperatorSettings,
    checkpoint_sources: Mapping[str, CheckpointSource] | None = None,
    parsed: FineTuneJobSpec | Resolution | None = None,
) -> tuple[FineTuneJobSpec | None, Resolution]:
    """Parse and resolve as the machine needs: with the preflight's facts, keeping an earlier `auto` choice.

    Once admitted, the job is never resolved again: its record (`status.resolved.record`) is
    what runs, whatever the templates say now.
    """
    if parsed is None:  # `parsed`: the shell's cached parse of this very spec
        parsed = parse_spec(raw_spec)
    if isinstance(parsed, Resolution):
        return None, parsed
    if status.resolved is not None and status.resolved.record is not None:
        return parsed, Resolution(job=status.resolved.record)
    chosen = status.resolved.template if status.resolved is not None else None
    return parsed, resolve_job(
        parsed,
        job_name=job.name,
        namespace=job.namespace,
        templates=templates,
        settings=settings,
        facts=observation.model_facts,
        chosen_template=chosen,
        checkpoint_sources=checkpoint_sources,
    )


def reconcile_step(
    *,
    job: JobFacts,
    raw_spec: Mapping[str, Any],
    status: FineTuneJobStatus,
    templates: Sequence[BaseModelTemplate],
    observation: Observation,
    now: datetime,
    settings: OperatorSettings,
    spent_gpu_hours: float | None = None,
) -> tuple[Step, Resolution]:
    """The whole pure core for one reconcile: parse, resolve, advance.

    The Resolution comes back too: the shell renders CreatePreflight from
    `resolution.preflight_job` and CreateAttempt from `resolution.job`.
    """
    spec, resolution = resolve_for(
        job=job, raw_spec=raw_spec, status=status, templates=templates, observation=observation, settings=settings
    )
    step = advance(
        job=job,
        spec=spec,
        status=status,
        resolution=resolution,
        observation=observation,
        now=now,
        settings=settings,
        spent_gpu_hours=spent_gpu_hours,
    )
    return step, resolution
