"""One reconcile pass of one FineTuneJob: read the indexes, call the pure core, patch, then act.

The status is patched first, conditionally on the resourceVersion the pass read: a 409 means
someone (the trainer, another pass) wrote in between, so nothing is acted on and the pass runs
again on fresh state. Only after the status is stored are children created or deleted (then
Events posted), so a restart re-derives the same actions from the stored status and meets its own
children through 409s (create-if-absent), never duplicating them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..api.conditions import EventNote
from ..api.record import ResolvedJob
from ..api.serve import ServeSpec
from ..api.status import FineTuneJobStatus
from ..kube import FINETUNEJOBS, JOBS, ApiError, KubeClient
from ..lifecycle.actions import (
    CreateAttempt,
    CreatePreflight,
    DeleteAttempt,
    DeleteFineTuneJob,
    DeletePreflight,
    EnsureServing,
    RequeueAfter,
)
from ..lifecycle.event_failures import with_unposted
from ..lifecycle.transitions import Step, advance
from ..metrics import OperatorMetrics
from ..render import JobRef, render_attempt, render_preflight
from ..render.naming import attempt_name, preflight_name
from ..settings import OperatorSettings
from .bookkeeping import record_step
from .cache import Body, ClusterView, JobKey
from .inputs import JobInputs, gather
from .serving import ensure_serving
from .writes import apply_children, post_events

logger = logging.getLogger(__name__)


def status_patch(old: dict[str, Any], new: FineTuneJobStatus) -> dict[str, Any]:
    """A merge patch from `old` to `new`, top-level keys only: what did not change is not sent.

    Keys the trainer owns (stage, stages, progress) are left alone unless the core changed them,
    so a pass never overwrites a progress report it did not read.
    """
    wanted = new.to_wire()
    patch: dict[str, Any] = {key: value for key, value in wanted.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in wanted})
    return patch


def _record(status: FineTuneJobStatus) -> ResolvedJob | None:
    """What an attempt runs: the record stored at admission, never a fresh resolution."""
    return status.resolved.record if status.resolved is not None else None


class Reconciler:
    def __init__(
        self,
        *,
        view: ClusterView,
        client: KubeClient,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.view, self.client, self.settings, self.metrics, self.clock = view, client, settings, metrics, clock

    async def __call__(self, key: JobKey) -> float | None:
        with self.metrics.reconcile_duration.time():
            body = self.view.job(key)
            if body is None:
                self.metrics.job_phase(key, None)
                return None
            now = self.clock()
            self.view.settle(key)
            inputs = gather(self.view, key, body, settings=self.settings, now=now)
            step = advance(
                job=inputs.facts,
                spec=inputs.spec,
                status=inputs.status,
                resolution=inputs.resolution,
                observation=inputs.observation,
                now=now,
                settings=self.settings,
                spent_gpu_hours=inputs.spent_gpu_hours,
            )
            logger.debug("%s/%s: %d events, %d actions", *key, len(step.events), len(step.actions))
            if not await self._store_status(key, body, step.status):
                return 0.0  # stale read: run again on the fresher object
            record_step(self.metrics, key, old=inputs.status, step=step)
            requeue = await self._act(key, body, inputs, step, now=now)
            refused = await post_events(self.client, body, step.events, now=now)
            if refused:
                await self._warn_unposted(key, refused)
            return requeue

    async def _warn_unposted(self, key: JobKey, refused: list[tuple[EventNote, str]]) -> None:
        """Say in status.warnings which Events the API refused (deduplicated, bounded: lifecycle/event_failures)."""
        body = self.view.job(key)  # as this pass last stored it (a serving outcome included)
        if body is None:
            return
        warnings = with_unposted(FineTuneJobStatus.parse(body.get("status") or {}).warnings, refused)
        if warnings is None:
            return
        namespace, name = key
        patch = {"status": {"warnings": [w.to_wire() for w in warnings]}}
        try:
            stored = await self.client.merge_patch(
                FINETUNEJOBS, patch, namespace=namespace, name=name, subresource="status"
            )
        except ApiError as error:  # the job went, or the API refuses this too: said in the log only
            logger.warning("could not record the unposted Events of %s/%s: %s", namespace, name, error.reason)
            return
        self.view.remember(key, stored)

    async def _store_status(self, key: JobKey, body: Body, status: FineTuneJobStatus) -> bool:
        patch = status_patch(body.get("status") or {}, status)
        if not patch:
            return True
        namespace, name = key
        guarded = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]}, "status": patch}
        try:
            stored = await self.client.merge_patch(
                FINETUNEJOBS, guarded, namespace=namespace, name=name, subresource="status"
            )
        except ApiError as error:
            if not (error.conflict or error.not_found):
                raise
            fresh = await self.client.get(FINETUNEJOBS, namespace=namespace, name=name)
            if fresh is not None:
                self.view.remember(key, fresh)
            return False
        self.view.remember(key, stored)
        return True

    async def _act(self, key: JobKey, body: Body, inputs: JobInputs, step: Step, *, now: datetime) -> float | None:
        namespace, name = key
        job = JobRef(namespace=namespace, name=name, uid=body["metadata"]["uid"])
        requeue: float | None = None
        for action in step.actions:
            if isinstance(action, CreatePreflight) and inputs.resolution.preflight_job is not None:
                if not self.view.awaiting(key, preflight_name(name)):
                    manifests = render_preflight(inputs.resolution.preflight_job, job=job, settings=self.settings)
                    await apply_children(self.client, manifests)
                    self.view.expect(key, preflight_name(name))
            elif isinstance(action, CreateAttempt) and (record := _record(step.status)) is not None:
                if self.view.awaiting(key, attempt_name(name, action.attempt)):
                    continue
                manifests = render_attempt(
                    record,
                    job=job,
                    attempt=action.attempt,
                    settings=self.settings,
                    resume_from=action.resume_from,
                )
                if await apply_children(self.client, manifests) and action.attempt == 1:
                    created = datetime.fromisoformat(body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
                    self.metrics.apply_to_pods.observe(max(0.0, (now - created).total_seconds()))
                self.view.expect(key, attempt_name(name, action.attempt))
            elif isinstance(action, DeletePreflight):
                await self.client.delete(JOBS, namespace=namespace, name=preflight_name(name))
            elif isinstance(action, DeleteAttempt):
                await self.client.delete(JOBS, namespace=namespace, name=attempt_name(name, action.attempt))
            elif isinstance(action, EnsureServing) and inputs.spec is not None and inputs.spec.serve is not None:
                if not await self._serve(key, job, inputs.spec.serve, now=now):
                    requeue = 0.0  # our status write met a newer object: look again
            elif isinstance(action, DeleteFineTuneJob):
                await self.client.delete(FINETUNEJOBS, namespace=namespace, name=name)
            elif isinstance(action, RequeueAfter):
                requeue = action.seconds if requeue is None else min(requeue, action.seconds)
        return requeue

    async def _serve(self, key: JobKey, job: JobRef, serve: ServeSpec, *, now: datetime) -> bool:
        """Ensure the serving objects, then store status.serving (a second, guarded write) and post its Events."""
        body = self.view.job(key)  # as this pass stored it (or newer): the outcome goes on top of that
        if body is None:
            return True
        stored = FineTuneJobStatus.parse(body.get("status") or {})
        outcome = await ensure_serving(
            self.client, serve=serve, job=job, status=stored, settings=self.settings, now=now
        )
        if outcome is None:
            return True
        if not await self._store_status(key, body, outcome.status):
            return False
        if refused := await post_events(self.client, body, outcome.events, now=now):
            await self._warn_unposted(key, refused)
        return True
