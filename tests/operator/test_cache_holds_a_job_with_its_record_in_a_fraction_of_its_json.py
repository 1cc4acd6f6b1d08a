"""The operator's index holds each FineTuneJob, stored record included, in a small fraction of its JSON, and
reads back exactly what the watch delivered (memory per job is a goal of bench/operator_scale.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from kubetune_operator.api.status import FineTuneJobStatus, Resolved
from kubetune_operator.controller.cache import ClusterView, packed

from .core_builders import resolved, spec


def _admitted_job(number: int) -> dict[str, Any]:
    """A FineTuneJob as the watch delivers it once admitted: its spec, and a status carrying its whole record."""
    name = f"support-bot-{number}"
    record = resolved(spec(suffix=f"v{number}", hyperparameters={"learningRate": 1e-5 * (1 + number % 7)}))
    summary = Resolved(template=record.template.name, model_repo=record.model_repo, record=record, hash=record.digest())
    status = FineTuneJobStatus(resolved=summary, attempt=1)
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": str(uuid.UUID(int=number)),
            "resourceVersion": str(1000 + number),
            "generation": 1,
            "creationTimestamp": "2026-01-01T12:00:00Z",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"model": "togethercomputer/llama-2-7b-chat", "trainingFile": f"s3://data/{name}.jsonl"},
        "status": status.to_wire(),
    }


def test_an_admitted_job_is_held_in_under_a_fifth_of_its_json_and_read_back_unchanged() -> None:
    view = ClusterView()
    jobs = [_admitted_job(number) for number in range(50)]
    stored = {("ml", job["metadata"]["name"]): [view.pack("finetunejobs", job)] for job in jobs}
    view.attach(finetunejobs=stored)

    as_json = sum(len(packed(job)) for job in jobs[1:])
    held = sum(len(value) for key, (value,) in stored.items() if key[1] != jobs[0]["metadata"]["name"])
    assert held * 5 < as_json, f"{held} bytes held for {as_json} bytes of JSON"
    for job in jobs:
        body = view.job(("ml", job["metadata"]["name"]))
        assert body == json.loads(packed(job))  # managedFields dropped, nothing else changed
        assert body is not None
        assert body["status"]["resolved"]["record"] == job["status"]["resolved"]["record"]
