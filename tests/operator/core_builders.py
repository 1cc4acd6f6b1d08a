"""Builders for the operator core's tests: real catalog templates, specs, and pods as the API shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubetune_operator.api.record import ResolvedJob
from kubetune_operator.api.resources import BaseModelTemplate
from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.render import JobRef
from kubetune_operator.resolve.catalog import load_catalog
from kubetune_operator.resolve.resolution import resolve_job
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import Result

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(trainer_image="registry.example/kubetune/trainer:1.0")
JOB = JobRef(namespace="ml", name="support-bot", uid="0b7c3a52-1f11-4a6e-9c1e-3f1f5e0a1b2c")
CATALOG = tuple(load_catalog())
SENTINEL_SECRET_VALUE = "hf_SENTINEL_must_never_appear_0123456789"


def template(name: str) -> BaseModelTemplate:
    return next(t for t in CATALOG if t.name == name)


def with_template_changes(name: str, **spec_changes: Any) -> BaseModelTemplate:
    """A catalog template with parts of its spec replaced (as a cluster admin would edit it)."""
    base = template(name).to_wire()
    base["spec"] = {**base["spec"], **spec_changes}
    return BaseModelTemplate.parse(base)


def spec(**fields: Any) -> FineTuneJobSpec:
    body: dict[str, Any] = {"model": "togethercomputer/llama-2-7b-chat", "trainingFile": "s3://data/train.jsonl"}
    body.update(fields)
    return FineTuneJobSpec.parse(body)


def resolved(
    job_spec: FineTuneJobSpec | None = None,
    *,
    templates: tuple[BaseModelTemplate, ...] = CATALOG,
    settings: OperatorSettings = SETTINGS,
) -> ResolvedJob:
    outcome = resolve_job(
        job_spec or spec(), job_name=JOB.name, namespace=JOB.namespace, templates=templates, settings=settings
    )
    assert outcome.job is not None, outcome.message
    return outcome.job


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    *,
    index: int = 0,
    phase: str = "Pending",
    created: datetime = T0,
    conditions: list[dict[str, Any]] | None = None,
    container_state: dict[str, Any] | None = None,
    image: str = "registry.example/kubetune/trainer:1.0",
    env: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A trainer pod as the API server returns it, in the shape the kubelet and scheduler leave it."""
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if container_state is not None:
        status["containerStatuses"] = [{"name": "trainer", "image": image, "state": container_state}]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return {
        "metadata": {
            "name": f"support-bot-a1-{index}-x7k2p",
            "creationTimestamp": stamp(created),
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "spec": {"containers": [{"name": "trainer", "image": image, "env": env or []}]},
        "status": status,
    }


def running(started: datetime = T0) -> dict[str, Any]:
    return {"running": {"startedAt": stamp(started)}}


def terminated(
    *, exit_code: int, started: datetime = T0, minutes: float = 10, result: Result | None = None, reason: str = ""
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": stamp(started),
        "finishedAt": stamp(started + timedelta(minutes=minutes)),
    }
    if result is not None:
        state["message"] = result.to_termination_message()
    return {"terminated": state}


def batch_job(
    *, completions: int = 1, suspend: bool = False, conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "support-bot-a1"},
        "spec": {"completions": completions, "parallelism": completions, "suspend": suspend},
        "status": {"conditions": conditions or []},
    }
