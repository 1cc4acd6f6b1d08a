"""The trainer's identity: a ServiceAccount whose Role may only read and patch its own job's status.

Rank 0 reports progress with the pod's token; the Role names the one FineTuneJob in
`resourceNames`, so a compromised pod can touch nothing else, not even another job's status.
"""

from __future__ import annotations

from typing import Any

from ..api.names import FINETUNEJOB, GROUP
from .labels import TRAINER, JobRef, labels_for, metadata_for
from .naming import trainer_account_name


def service_account(job: JobRef, *, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """A ServiceAccount with no token mounted by default; `annotations` carry a cloud identity (IRSA, GKE WI)."""
    metadata = metadata_for(job, name=name, labels=labels)
    if annotations:
        metadata["annotations"] = {**metadata.get("annotations", {}), **annotations}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata, "automountServiceAccountToken": False}


def trainer_rbac(job: JobRef, *, annotations: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding, in the order they are created."""
    name = trainer_account_name(job.name)
    labels = labels_for(job, component=TRAINER)
    return [
        service_account(job, name=name, labels=labels, annotations=annotations or {}),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata_for(job, name=name, labels=labels),
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": [f"{FINETUNEJOB.plural}/status"],
                    "resourceNames": [job.name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata_for(job, name=name, labels=labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.namespace}],
        },
    ]
