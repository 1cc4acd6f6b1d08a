"""`spec.pod`: what a job may add to its pods, within what the administrator allows.

Extra environment variables (plain values, or keys of Secrets in the job's namespace), extra
PersistentVolumeClaim volumes (a dataset claim), tolerations and node affinity. Each is checked
against the operator's allow-lists (settings podEnvAllowed, podVolumeClaimsAllowed,
podTolerationsAllowed, podAffinityAllowed) when the job is resolved (resolve/pod_additions.py);
names are quoted in errors, values never.
"""

from __future__ import annotations

import enum

from pydantic import Field

from kubetune_trainer.contract import WireModel

from .fields import DnsLabel, DnsSubdomain, LabelValue
from .kube_shapes import SecretKeyRef, Toleration

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MOUNT_PATH = r"^/[A-Za-z0-9._/-]*$"
LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class PlainEnv(WireModel):
    """An environment variable with a value written in the spec (nothing secret: it is stored in status)."""

    name: str = Field(min_length=1, max_length=128, pattern=ENV_NAME, description="Variable name, e.g. NCCL_DEBUG.")
    value: str = Field(max_length=4096, description="Its value.")


class SecretEnv(WireModel):
    """An environment variable the kubelet reads from a Secret of the job's namespace (never the operator)."""

    name: str = Field(min_length=1, max_length=128, pattern=ENV_NAME, description="Variable name.")
    secret_key_ref: SecretKeyRef = Field(description="The Secret and key holding its value.")


class ClaimVolume(WireModel):
    """A PersistentVolumeClaim of the job's namespace mounted in its pods, e.g. a dataset claim."""

    name: DnsLabel = Field(description="Volume name (pods name it extra-<name>).")
    claim_name: DnsSubdomain = Field(description="The PersistentVolumeClaim.")
    mount_path: str = Field(
        min_length=2, max_length=1024, pattern=MOUNT_PATH, description="Where it is mounted: an absolute path."
    )
    read_only: bool = Field(True, description="Mount read-only. Default true.")


class NodeSelectorOperator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"


class NodeSelectorRequirement(WireModel):
    key: str = Field(min_length=1, max_length=316, pattern=LABEL_KEY, description="Node label key.")
    operator: NodeSelectorOperator = Field(description="In, NotIn, Exists, DoesNotExist, Gt or Lt.")
    values: list[LabelValue] = Field(default_factory=list, max_length=64, description="Values for In, NotIn, Gt, Lt.")


class NodeSelectorTerm(WireModel):
    match_expressions: list[NodeSelectorRequirement] = Field(
        min_length=1, max_length=16, description="Requirements on node labels, all of which must hold."
    )


class NodeSelector(WireModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, max_length=8, description="Terms, any of which may hold."
    )


class PreferredSchedulingTerm(WireModel):
    weight: int = Field(ge=1, le=100, description="Weight, 1 to 100.")
    preference: NodeSelectorTerm = Field(description="The nodes preferred.")


class NodeAffinity(WireModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        None, description="Nodes a pod must run on."
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        None, max_length=8, description="Nodes a pod prefers."
    )


class Affinity(WireModel):
    """Node affinity of the trainer pods (Kubernetes' shape; pod affinity is not offered)."""

    node_affinity: NodeAffinity = Field(description="Which nodes the trainer pods run on.")


class PodAdditions(WireModel):
    """Additions to the job's pods; each kind only as far as the operator's settings allow it."""

    env: list[PlainEnv] = Field(
        default_factory=list, max_length=32, description="Environment variables (settings.podEnvAllowed)."
    )
    env_from_secrets: list[SecretEnv] = Field(
        default_factory=list, max_length=16, description="Environment variables from Secrets (podEnvAllowed)."
    )
    volumes: list[ClaimVolume] = Field(
        default_factory=list, max_length=8, description="PersistentVolumeClaims to mount (podVolumeClaimsAllowed)."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=16, description="Tolerations of the trainer pods (podTolerationsAllowed)."
    )
    affinity: Affinity | None = Field(None, description="Node affinity of the trainer pods (podAffinityAllowed).")
