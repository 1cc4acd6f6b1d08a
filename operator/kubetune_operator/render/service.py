"""The headless Service that gives multi-node trainer pods stable DNS names for the rendezvous."""

from __future__ import annotations

from typing import Any

from .labels import ATTEMPT_LABEL, JOB_LABEL, JobRef, metadata_for

RENDEZVOUS_PORT = 29500


def headless_service(job: JobRef, *, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_for(job, name=name, labels=labels),
        "spec": {
            "clusterIP": "None",
            # Rendezvous happens before any pod is Ready: DNS must answer for unready pods.
            "publishNotReadyAddresses": True,
            "selector": {JOB_LABEL: labels[JOB_LABEL], ATTEMPT_LABEL: labels[ATTEMPT_LABEL]},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
