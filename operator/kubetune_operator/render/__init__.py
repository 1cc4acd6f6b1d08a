"""ResolvedJob -> plain manifests (dicts), in the order they are created. Pure: no client, no clock.

`render_preflight` gives the CPU-only preflight (ConfigMap, Job); `render_attempt` gives one
attempt (ServiceAccount, Role, RoleBinding, ConfigMap, headless Service when nodes > 1, Indexed
Job). Every object is owned by the FineTuneJob and named by `naming`, so rendering twice gives
the same objects and a create that meets 409 has found its own earlier copy.
"""

from __future__ import annotations

from typing import Any

from kubetune_trainer.contract import JobIdentity, ReportTarget

from ..api.record import ResolvedJob
from ..settings import OperatorSettings
from .configmap import config_map
from .job import trainer_job
from .labels import PREFLIGHT, TRAINER, JobRef, labels_for
from .naming import attempt_name, preflight_name
from .pod import HF_CACHE_DIR, WORK_DIR
from .preflight import preflight_job
from .rbac import service_account, trainer_rbac
from .service import headless_service
from .trainer_config import build_trainer_config

__all__ = ["RESOLVED_HASH_ANNOTATION", "JobRef", "build_trainer_config", "render_attempt", "render_preflight"]

RESOLVED_HASH_ANNOTATION = "kubetune.dev/resolved-hash"
"""On an attempt's ConfigMap: the digest of the record it was rendered from (status.resolved.hash)."""


def render_attempt(
    resolved: ResolvedJob,
    *,
    job: JobRef,
    attempt: int,
    settings: OperatorSettings,
    resume_from: str | None = None,
) -> list[dict[str, Any]]:
    """Every object of attempt `attempt`, in creation order (the Job last, once what it needs exists)."""
    name = attempt_name(job.name, attempt)
    labels = labels_for(job, component=TRAINER, attempt=attempt)
    config = build_trainer_config(
        resolved,
        job=JobIdentity(namespace=job.namespace, name=job.name, uid=job.uid, attempt=attempt),
        report=ReportTarget(kind="kubernetes", min_interval_seconds=settings.report_interval_seconds),
        resume_from=resume_from,
        checkpoint_grace_seconds=settings.checkpoint_grace_seconds,
        metrics_port=settings.trainer_metrics_port,
        step_watchdog_floor_seconds=settings.step_watchdog_floor_seconds,
        pvc_mount_root=settings.pvc_mount_root,
        cache_dir=HF_CACHE_DIR,
        work_dir=WORK_DIR,
    )
    service = name if resolved.nodes > 1 else None
    configuration = config_map(job, name=name, labels=labels, config=config)
    # Which record this attempt runs: the same digest as status.resolved.hash.
    configuration["metadata"]["annotations"] = {RESOLVED_HASH_ANNOTATION: resolved.digest()}
    objects = [*trainer_rbac(job, annotations=settings.service_account_annotations or {}), configuration]
    if service is not None:
        objects.append(headless_service(job, name=service, labels=labels))
    objects.append(
        trainer_job(
            resolved,
            job=job,
            name=name,
            attempt=attempt,
            labels=labels,
            config_map=name,
            service=service,
            settings=settings,
        )
    )
    return objects


def render_preflight(resolved: ResolvedJob, *, job: JobRef, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The preflight's ConfigMap and Job: no GPU, no API token, the trainer image.

    With the operator's serviceAccountAnnotations set, a ServiceAccount of its own (no Role) comes first,
    so the preflight reads s3:// data with the same cloud identity as the trainer.
    """
    name = preflight_name(job.name)
    labels = labels_for(job, component=PREFLIGHT)
    config = build_trainer_config(
        resolved,
        job=JobIdentity(namespace=job.namespace, name=job.name, uid=job.uid, attempt=1),
        report=ReportTarget(kind="none"),
        pvc_mount_root=settings.pvc_mount_root,
        cache_dir=HF_CACHE_DIR,
        work_dir=WORK_DIR,
    )
    account = None
    objects: list[dict[str, Any]] = []
    if settings.service_account_annotations:
        account = name
        objects.append(service_account(job, name=name, labels=labels, annotations=settings.service_account_annotations))
    objects.append(config_map(job, name=name, labels=labels, config=config))
    objects.append(
        preflight_job(
            resolved, job=job, name=name, labels=labels, config_map=name, settings=settings, service_account=account
        )
    )
    return objects
