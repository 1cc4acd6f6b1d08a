"""The operator's own settings: one model, read from the environment in one place (`from_env`).

Everything the pure core needs to know about the installation (the trainer image, backoff,
grace periods, default output and checkpoint locations) arrives as an `OperatorSettings`
argument, so tests and `kubetune run --local` pass their own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "KUBETUNE_"
RENAMED = {"PREFLIGHT_RESULT_GRACE_SECONDS": "RESULT_GRACE_SECONDS"}
"""Old setting names still read (with a warning), to their new names; the new name wins when both are set."""

log = logging.getLogger(__name__)

ANNOTATION_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
"""A Kubernetes annotation key: an optional DNS-subdomain prefix and `/`, then a name."""
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A namespace name: a DNS label."""


def _key_values(raw: str, variable: str) -> dict[str, str]:
    """`k=v,k=v` -> a dict; an item without `=` names the variable and the shape expected."""
    pairs: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"invalid operator settings in {variable}: {item!r} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


class OperatorSettings(BaseModel):
    """How this installation runs jobs. Environment: `KUBETUNE_<FIELD_IN_UPPER_SNAKE_CASE>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trainer_image: str = Field(
        "ghcr.io/kubetune/trainer:0.1.0",
        min_length=1,
        description="Trainer image for templates that name none.",
    )
    namespaces: tuple[str, ...] = Field(
        (), description="Namespaces watched; empty: every namespace (comma-separated in the environment)."
    )
    preflight: bool = Field(
        True,
        description="Run the CPU-only preflight before GPUs are held, unless a template turns it off.",
    )
    retry_backoff_seconds: float = Field(30.0, gt=0, description="Wait before the first retry; doubles per retry.")
    retry_backoff_cap_seconds: float = Field(600.0, gt=0, description="Longest wait between two attempts.")
    template_retry_seconds: float = Field(30.0, gt=0, description="How often a job waiting for its template looks.")
    image_pull_grace_seconds: float = Field(
        300.0, ge=0, description="How long an image pull may fail before the job fails (ImagePullFailed)."
    )
    result_grace_seconds: float = Field(
        30.0,
        ge=0,
        description=(
            "How long a Complete or Failed Job may wait for its pod's termination message (the preflight's, "
            "rank 0's or the failed pod's Result) to be seen."
        ),
    )
    progress_event_interval_seconds: float = Field(
        60.0,
        ge=0,
        description="At most one CheckpointSaved, one EpochCompleted and one EvaluationCompleted Event per job "
        "in this many seconds; what happens in between is told by the next one (the latest wins).",
    )
    heartbeat_stale_seconds: float = Field(
        900.0, gt=0, description="A training heartbeat older than this fails the attempt as Stalled (retried)."
    )
    step_watchdog_floor_seconds: float | None = Field(
        None,
        gt=0,
        description="The trainer's step watchdog fails a run as Stalled (retried) when no step completes within "
        "max(10 x the median step time, this many seconds); unset: the trainer's default, 900.",
    )
    checkpoint_grace_seconds: int = Field(
        25,
        ge=0,
        description="The trainer's budget after SIGTERM to checkpoint and write its Result (GKE Spot gives ~30 s).",
    )
    termination_margin_seconds: int = Field(
        30, ge=0, description="Added to checkpointGraceSeconds for the pods' terminationGracePeriodSeconds."
    )
    default_output_uri: str = Field(
        "pvc://kubetune-models",
        min_length=1,
        description="Where models go when a job names no output: <uri>/<namespace>/<job>.",
    )
    default_checkpoint_uri: str | None = Field(
        None, description="Where checkpoints go when a job names none: <uri>/<namespace>/<job>; unset: none."
    )
    pvc_mount_root: str = Field("/mnt/pvc", description="Where pvc:// claims are mounted in trainer pods.")
    serving_url_poll_seconds: float = Field(
        30.0, gt=0, description="How often a served job looks for its InferenceService's status.url (for an hour)."
    )
    cache_claim: str | None = Field(
        None, description="PersistentVolumeClaim for the Hugging Face cache; unset: an emptyDir per pod."
    )
    report_interval_seconds: float = Field(5.0, ge=0, description="Least time between two progress patches.")
    trainer_metrics_port: int = Field(9400, ge=0, le=65535, description="Trainer metrics port on rank 0; 0: off.")
    preflight_cpu: str = Field("1", description="CPU request and limit of the preflight pod.")
    preflight_memory: str = Field("4Gi", description="Memory request and limit of the preflight pod.")
    run_as_user: int = Field(1000, ge=1, description="Non-root UID trainer pods run as.")
    service_account_annotations: dict[str, str] | None = Field(
        None,
        description="Annotations on the ServiceAccounts of trainer and preflight pods, for cloud identities: "
        "eks.amazonaws.com/role-arn=<arn> (IRSA) or iam.gke.io/gcp-service-account=<email> (Workload Identity); "
        "comma-separated key=value in the environment; unset: none.",
    )

    pod_env_allowed: tuple[str, ...] = Field(
        (),
        description="Environment variable names a job may add to its pods (spec.pod.env, spec.pod.envFromSecrets); "
        "shell-style patterns allowed (`NCCL_*`); comma-separated in the environment; empty: none.",
    )
    pod_volume_claims_allowed: tuple[str, ...] = Field(
        (),
        description="PersistentVolumeClaims a job may mount (spec.pod.volumes), by name or pattern (`dataset-*`); "
        "comma-separated in the environment; empty: none.",
    )
    pod_tolerations_allowed: bool = Field(
        False, description="Whether a job may add tolerations (spec.pod.tolerations)."
    )
    pod_affinity_allowed: bool = Field(False, description="Whether a job may set node affinity (spec.pod.affinity).")
    gpu_hour_budgets: dict[str, float] | None = Field(
        None,
        description="GPU-hour budget per namespace: a new job waits Queued (reason BudgetExceeded) while the "
        "GPU-hours its namespace has spent, plus its own estimate once known, would exceed it, and starts by "
        "itself once they fit; `*` is the budget of every namespace not named. Comma-separated namespace=hours "
        "in the environment (`team-a=500,*=100`); unset: no budget.",
    )
    budget_recheck_seconds: float = Field(
        60.0, gt=0, description="How often a job waiting for its namespace's GPU-hour budget looks again."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OperatorSettings:
        """Settings from `KUBETUNE_<FIELD>` variables; a bad value names its variable."""
        values: dict[str, Any] = {}
        known = {name.upper(): name for name in cls.model_fields}
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            suffix = key.removeprefix(ENV_PREFIX)
            if suffix in RENAMED:
                log.warning("%s is deprecated: set %s%s instead", key, ENV_PREFIX, RENAMED[suffix])
                if f"{ENV_PREFIX}{RENAMED[suffix]}" in environ:
                    continue
                suffix = RENAMED[suffix]
            if suffix not in known:
                continue  # other KUBETUNE_* variables (e.g. the CLI's) are not settings
            name = known[suffix]
            if name in ("namespaces", "pod_env_allowed", "pod_volume_claims_allowed"):
                values[name] = tuple(n.strip() for n in raw.split(",") if n.strip())
            elif name in ("service_account_annotations", "gpu_hour_budgets"):
                values[name] = _key_values(raw, f"{ENV_PREFIX}{suffix}")
            else:
                values[name] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            # The field's variable, not a dict key inside it (KUBETUNE_GPU_HOUR_BUDGETS, not ..._TEAM-A).
            fields = ", ".join(sorted({f"{ENV_PREFIX}{str(e['loc'][0]).upper()}" for e in error.errors() if e["loc"]}))
            raise ValueError(f"invalid operator settings in {fields}: {error}") from None

    @field_validator("service_account_annotations")
    @classmethod
    def _annotation_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not ANNOTATION_KEY.fullmatch(key):
                raise ValueError(f"{key!r} is not an annotation key such as eks.amazonaws.com/role-arn")
        return value

    @field_validator("gpu_hour_budgets")
    @classmethod
    def _budget_namespaces(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for namespace, hours in (value or {}).items():
            if namespace != "*" and not NAMESPACE_NAME.fullmatch(namespace):
                raise ValueError(f"{namespace!r} is not a namespace name (or `*` for every other namespace)")
            if hours < 0:
                raise ValueError(f"the budget of {namespace} is {hours:g}: give GPU-hours of 0 or more")
        return value

    def gpu_hour_budget(self, namespace: str) -> float | None:
        """The namespace's GPU-hour budget: its own, else `*`'s; None: no budget."""
        budgets = self.gpu_hour_budgets or {}
        return budgets.get(namespace, budgets.get("*"))

    @property
    def termination_grace_seconds(self) -> int:
        """Longer than the trainer's checkpoint budget, so a SIGTERM never cuts a checkpoint short."""
        return self.checkpoint_grace_seconds + self.termination_margin_seconds
