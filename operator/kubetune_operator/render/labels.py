"""Labels and owner references every rendered object carries."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kubetune_trainer.contract import WireModel

from ..api.names import API_VERSION, FINETUNEJOB

JOB_LABEL = "kubetune.dev/job"
ATTEMPT_LABEL = "kubetune.dev/attempt"
COMPONENT_LABEL = "kubetune.dev/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
TRAINER = "trainer"
PREFLIGHT = "preflight"


class JobRef(WireModel):
    """The FineTuneJob that owns what is rendered."""

    namespace: str = Field(description="Namespace of the FineTuneJob.")
    name: str = Field(description="Name of the FineTuneJob.")
    uid: str = Field(description="UID of the FineTuneJob: owner references name it.")


def labels_for(job: JobRef, *, component: str, attempt: int | None = None) -> dict[str, str]:
    labels = {JOB_LABEL: job.name, COMPONENT_LABEL: component, MANAGED_BY_LABEL: "kubetune"}
    if attempt is not None:
        labels[ATTEMPT_LABEL] = str(attempt)
    return labels


def metadata_for(job: JobRef, *, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Object metadata owned by the FineTuneJob, so deleting the job collects its children."""
    return {
        "name": name,
        "namespace": job.namespace,
        "labels": dict(labels),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": FINETUNEJOB.kind,
                "name": job.name,
                "uid": job.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
