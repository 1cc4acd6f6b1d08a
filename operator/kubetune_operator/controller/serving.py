"""The EnsureServing action: create spec.serve's objects, and say in status what was made or why not.

A refusal by the API server (403 Forbidden, 404 when KServe's API group is not installed, 422, a
name someone else holds) is what the user asked for and did not get: status.serving says Failed,
status.warnings and a Warning Event say why and what to do, and the job stays Succeeded. Transient
failures (429, 5xx, an unreachable server) propagate, and the reconcile is retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetune_trainer.contract import WarningNote

from ..api.conditions import EventNote, Reason
from ..api.serve import ServeKind, ServeSpec, ServingState, ServingStatus
from ..api.status import FineTuneJobStatus
from ..kube import ApiError, ForeignOwner, KubeClient, ensure_objects
from ..render.inference_service import KSERVE_API_VERSION
from ..render.labels import JobRef
from ..render.serving import ServingPlan, render_serving
from ..settings import OperatorSettings

logger = logging.getLogger(__name__)
SERVING_NOT_CREATED = Reason.SERVING_NOT_CREATED


@dataclass(frozen=True)
class ServingOutcome:
    status: FineTuneJobStatus
    events: list[EventNote]


async def ensure_serving(
    client: KubeClient,
    *,
    serve: ServeSpec,
    job: JobRef,
    status: FineTuneJobStatus,
    settings: OperatorSettings,
    now: datetime,
) -> ServingOutcome | None:
    """The status with status.serving (and a warning when refused), and the Events to post; None: no record."""
    resolved = status.resolved
    if resolved is None or resolved.record is None:
        return None
    plan = render_serving(serve, resolved.record, job=job, parameters=resolved.parameters, settings=settings)
    try:
        stored = await ensure_objects(client, plan.manifests)
    except ApiError as error:
        if error.status == 429 or error.status >= 500:
            raise
        return _refused(plan, serve, status, _api_refusal(plan, job, error), now=now)
    except ForeignOwner as taken:
        why = f"{taken}: name the serving objects with serve.name, or delete that {taken.kind}"
        return _refused(plan, serve, status, why, now=now)
    url = plan.url if plan.kind == ServeKind.VLLM else _kserve_url(stored[0][0])
    before = status.serving
    made_at = before.time if before is not None and before.state == ServingState.CREATED else now
    serving = _serving_status(plan, serve, state=ServingState.CREATED, time=made_at, url=url)
    events = []
    where = f"model {plan.model} at {url}" if url else f"model {plan.model}; its URL once KServe reports it"
    if before is None or before.state != ServingState.CREATED:
        created = "created" if any(new for _, new in stored) else "found"
        events.append(EventNote.normal(Reason.SERVING_CREATED, f"{created} {', '.join(plan.objects)}: {where}"))
    elif url is not None and before.url is None:
        events.append(EventNote.normal(Reason.SERVING_READY, f"{', '.join(plan.objects)} serves {where}"))
    return ServingOutcome(status=_with(status, serving, warning=None), events=events)


def _serving_status(
    plan: ServingPlan,
    serve: ServeSpec,
    *,
    state: ServingState,
    time: datetime,
    url: str | None = None,
    message: str | None = None,
) -> ServingStatus:
    """status.serving for `plan`: what was asked for (kind, name, owner, objects, model) and how it went."""
    return ServingStatus(
        kind=plan.kind,
        name=plan.name,
        state=state,
        owned=serve.owned,
        objects=plan.objects,
        model=plan.model,
        url=url,
        message=message,
        time=time,
    )


def _kserve_url(isvc: dict[str, Any]) -> str | None:
    """KServe's status.url (the route), else status.address.url (in the cluster), once reported."""
    status = isvc.get("status") or {}
    url = status.get("url") or (status.get("address") or {}).get("url")
    return url if isinstance(url, str) and url else None


def _api_refusal(plan: ServingPlan, job: JobRef, error: ApiError) -> str:
    kind = "InferenceService" if plan.kind == ServeKind.KSERVE else "Deployment and Service"
    later = f"`kubetune jobs serve {job.name}` creates it later"
    if error.status == 404 and plan.kind == ServeKind.KSERVE:
        return (
            f"the {KSERVE_API_VERSION} API is not installed in this cluster (404): install KServe, or set "
            f"serve.kind: vllm; {later}"
        )
    if error.status == 403:
        return (
            f"the operator may not create the {kind} in namespace {job.namespace} (403 Forbidden): grant it create "
            f"and get (the chart's rbac.serving), or create it with your own rights: {later}"
        )
    return f"the API server refused the {kind} {plan.name} ({error.status} {error.reason}: {error.message}); {later}"


def _refused(
    plan: ServingPlan, serve: ServeSpec, status: FineTuneJobStatus, why: str, *, now: datetime
) -> ServingOutcome:
    logger.warning("serving %s not created: %s", plan.name, why)
    serving = _serving_status(plan, serve, state=ServingState.FAILED, time=now, message=why)
    message = f"spec.serve asked for {', '.join(plan.objects)}, which was not created: {why}"
    warning = WarningNote(reason=SERVING_NOT_CREATED, message=message)
    return ServingOutcome(
        status=_with(status, serving, warning=warning),
        events=[EventNote.warning(SERVING_NOT_CREATED, message)],
    )


def _with(status: FineTuneJobStatus, serving: ServingStatus, *, warning: WarningNote | None) -> FineTuneJobStatus:
    warnings = [w.to_wire() for w in status.warnings if w.reason != SERVING_NOT_CREATED]
    if warning is not None:
        warnings.append(warning.to_wire())
    return FineTuneJobStatus.parse({**status.to_wire(), "serving": serving.to_wire(), "warnings": warnings})
