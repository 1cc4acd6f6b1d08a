"""A Python client with Together's fine-tuning verbs and shapes, over FineTuneJobs in a cluster.

    from kubetune_operator.client import Kubetune      # was: from together import Together
    client = Kubetune()                                  # was: client = Together()
    job = client.fine_tuning.create(model="togethercomputer/llama-2-7b-chat",
                                    training_file="pvc://datasets/train.jsonl", n_epochs=3, suffix="bot")
    client.fine_tuning.retrieve(job.id).status

The cluster is reached with the `kubernetes` library (the `client` extra): any kubeconfig (exec
plugins, OIDC, client certificates, tokens) or, in a pod, its ServiceAccount. It imports no kopf.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client as k8s

from .connection import NoCluster, connect
from .create_request import UnsupportedArgument
from .fine_tuning import FineTuning, JobRequestError
from .shapes import (
    COMPLETED_STATUSES,
    FinetuneCheckpoint,
    FinetuneDownloadResult,
    FinetuneEvent,
    FinetuneJobStatus,
    FinetuneList,
    FinetuneListEvents,
    FinetuneResponse,
)

__all__ = [
    "COMPLETED_STATUSES",
    "FineTuning",
    "FinetuneCheckpoint",
    "FinetuneDownloadResult",
    "FinetuneEvent",
    "FinetuneJobStatus",
    "FinetuneList",
    "FinetuneListEvents",
    "FinetuneResponse",
    "JobRequestError",
    "Kubetune",
    "NoCluster",
    "UnsupportedArgument",
]


class Kubetune:
    """Together's client shape: `client.fine_tuning.<verb>(...)` (and `client.fine_tunes`, its old name)."""

    def __init__(
        self,
        *,
        namespace: str | None = None,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        api_client: k8s.ApiClient | None = None,
        pvc_root: str | Path | None = None,
    ) -> None:
        if api_client is None:
            access = connect(kubeconfig=kubeconfig, context=context)
            api_client, namespace = access.api, namespace or access.namespace
        self.namespace = namespace or "default"
        self.fine_tuning = FineTuning(
            api_client, namespace=self.namespace, pvc_root=Path(pvc_root) if pvc_root is not None else None
        )
        self.fine_tunes = self.fine_tuning
