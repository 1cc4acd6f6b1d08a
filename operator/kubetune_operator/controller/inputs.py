"""Everything the pure core needs about one FineTuneJob, gathered from the indexes and parsed once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from ..api.resources import BaseModelTemplate
from ..api.spec import FineTuneJobSpec
from ..api.status import FineTuneJobStatus
from ..lifecycle.step import resolve_for
from ..lifecycle.transitions import JobFacts
from ..observe.observation import Observation, observe
from ..render.labels import ATTEMPT_LABEL, COMPONENT_LABEL, PREFLIGHT, TRAINER
from ..render.naming import attempt_name, preflight_name
from ..resolve.resolution import CheckpointSource, Resolution, parse_spec
from ..settings import OperatorSettings
from .budget import spent_gpu_hours
from .cache import Body, ClusterView, JobKey

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobInputs:
    facts: JobFacts
    spec: FineTuneJobSpec | None
    status: FineTuneJobStatus
    resolution: Resolution
    observation: Observation
    spent_gpu_hours: float | None = None


def _controller_uid(obj: Body) -> str | None:
    references = obj.get("metadata", {}).get("ownerReferences") or []
    return next((ref.get("uid") for ref in references if ref.get("controller")), None)


def _labelled(pods: list[Body], **wanted: str) -> list[Body]:
    return [pod for pod in pods if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]


def _checkpoint_sources(view: ClusterView, namespace: str, reference: object) -> dict[str, CheckpointSource]:
    """The FineTuneJob `fromCheckpoint` names, if it exists: its uid (whose checkpoints) and what it trained."""
    if not isinstance(reference, str):
        return {}
    source = reference.partition(":")[0].partition("@")[0]
    body = view.job((namespace, source))
    uid = (body or {}).get("metadata", {}).get("uid")
    if body is None or not isinstance(uid, str):
        return {}
    resolved = (body.get("status") or {}).get("resolved") or {}
    record = resolved.get("record") or {}
    repo = record.get("modelRepo") or resolved.get("modelRepo")
    sha = record.get("revisionSha") or resolved.get("revisionSha")
    return {
        source: CheckpointSource(
            uid=uid,
            model_repo=repo if isinstance(repo, str) else None,
            revision_sha=sha if isinstance(sha, str) else None,
        )
    }


def templates_of(view: ClusterView) -> list[BaseModelTemplate]:
    """The valid templates, each decoded and parsed once per stored body (a pass must not re-read a catalog)."""
    parsed = []
    stored = view.stored_templates()
    for packed_body in stored:
        if packed_body not in view.parsed_templates:
            raw = view.unpack_template(packed_body)
            try:
                view.parsed_templates[packed_body] = BaseModelTemplate.parse(
                    {k: v for k, v in raw.items() if k != "status"}
                )
            except ValidationError:
                logger.warning("BaseModelTemplate %s is invalid and is ignored", raw.get("metadata", {}).get("name"))
                view.parsed_templates[packed_body] = None
        if (template := view.parsed_templates[packed_body]) is not None:
            parsed.append(template)
    if len(view.parsed_templates) > 2 * len(stored) + 8:  # edited or deleted templates: forget their old bodies
        current = set(stored)
        for gone in [body for body in view.parsed_templates if body not in current]:
            del view.parsed_templates[gone]
    return parsed


def gather(view: ClusterView, key: JobKey, body: Body, *, settings: OperatorSettings, now: datetime) -> JobInputs:
    namespace, name = key
    meta = body["metadata"]
    facts = JobFacts(name=name, namespace=namespace, uid=meta["uid"], generation=int(meta.get("generation") or 1))
    status = FineTuneJobStatus.parse(body.get("status") or {})

    # Only children this FineTuneJob controls count: a same-named job's leftovers are someone else's.
    jobs = {job["metadata"]["name"]: job for job in view.batch_jobs(key) if _controller_uid(job) == meta["uid"]}
    job_uids = {job["metadata"].get("uid") for job in jobs.values()}
    every_pod = view.pods(key)
    pods = [pod for pod in every_pod if _controller_uid(pod) in job_uids or _controller_uid(pod) is None]
    attempt = status.attempt
    # Fencing counts every pod of the attempt, its Job's or not: a pod whose Job is gone may still be
    # Terminating, writing its SIGTERM checkpoint.
    present = _labelled(every_pod, **{COMPONENT_LABEL: TRAINER, ATTEMPT_LABEL: str(attempt)}) if attempt else []
    observation = observe(
        preflight_job=jobs.get(preflight_name(name)),
        preflight_pods=_labelled(pods, **{COMPONENT_LABEL: PREFLIGHT}),
        attempt=attempt,
        attempt_job=jobs.get(attempt_name(name, attempt)) if attempt else None,
        attempt_pods=_labelled(pods, **{COMPONENT_LABEL: TRAINER, ATTEMPT_LABEL: str(attempt)}) if attempt else [],
        now=now,
        settings=settings,
        attempt_pods_present=len(present),
    )

    # The same parse-and-resolve the pure-core tests run (reconcile.resolve_for), not a copy of it.
    raw_spec = body.get("spec") or {}
    admitted = status.resolved is not None and status.resolved.record is not None  # resolved once, never again
    parsed = view.parsed_spec((namespace, name, facts.uid, facts.generation), lambda: parse_spec(raw_spec))
    spec, resolution = resolve_for(
        job=facts,
        raw_spec=raw_spec,
        status=status,
        templates=[] if admitted else templates_of(view),
        observation=observation,
        settings=settings,
        checkpoint_sources=None if admitted else _checkpoint_sources(view, namespace, raw_spec.get("fromCheckpoint")),
        parsed=parsed,
    )
    return JobInputs(
        facts=facts,
        spec=spec,
        status=status,
        resolution=resolution,
        observation=observation,
        spent_gpu_hours=spent_gpu_hours(view, key, status, settings=settings),
    )
