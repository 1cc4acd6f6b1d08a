"""A sentinel Secret value never appears in any request, stored object, Event or log; Secrets are never read."""

from __future__ import annotations

import json
import logging
import uuid

import kmock
import pytest

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, Actors, trainer_succeeded, wait_for
from .conftest import StartOperator, status_of
from .journeys import pass_preflight, to_running, until_phase


async def test_a_sentinel_secret_value_appears_nowhere(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # spec.pod's env from a Secret and a dataset claim, allowed by the administrator, are as safe.
    await start_operator(pod_env_allowed=("DATASET_*",), pod_volume_claims_allowed=("datasets-*",))
    sentinel = f"SENTINEL-{uuid.uuid4()}"
    keys = {
        "token": sentinel,
        "s3-id": f"{sentinel}-access-key-id",
        "s3-key": f"{sentinel}-secret-access-key",
        "dataset": f"{sentinel}-dataset-token",
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"}, "stringData": keys}
    async with cluster.post(f"/api/v1/namespaces/{NAMESPACE}/secrets", json=secret) as made:
        assert made.status < 400

    storage = {
        "s3": {
            "credentialsSecretRef": {"name": "hf-token", "accessKeyIdKey": "s3-id", "secretAccessKeyKey": "s3-key"},
            "endpointUrl": "http://minio.storage.svc:9000",
            "region": "us-east-1",
        }
    }
    (pod,) = await to_running(
        cluster,
        actors,
        "private",
        wandb={"apiKeySecretRef": {"name": "hf-token", "key": "token"}},
        storage=storage,
        output={"uri": "s3://models/private"},
        serve={"kind": "vllm"},  # its server copies the model from s3 with the same keys
        pod={
            "envFromSecrets": [{"name": "DATASET_TOKEN", "secretKeyRef": {"name": "hf-token", "key": "dataset"}}],
            "volumes": [{"name": "corpus", "claimName": "datasets-2026", "mountPath": "/data/corpus"}],
        },
    )
    (trainer_job,) = [
        obj.raw
        for (resource, _, name), obj in cluster.objects.items()
        if resource.plural == "jobs" and name == "private-a1"
    ]
    (container,) = trainer_job["spec"]["template"]["spec"]["containers"]
    trainer_env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert trainer_env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "hf-token", "key": "s3-id"}}
    assert trainer_env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "hf-token", "key": "s3-key"}}
    assert trainer_env["DATASET_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "dataset"}}
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("private-a1", "Complete")
    await until_phase(cluster, "private", "Succeeded")
    await wait_for(lambda: (status_of(cluster, "private").get("serving") or {}).get("state") == "Created")
    server = cluster.live(kmock.resource("apps/v1/deployments"), NAMESPACE, "private")
    assert server is not None
    (download,) = server["spec"]["template"]["spec"]["initContainers"]
    server_env = {e["name"]: e.get("valueFrom") for e in download["env"]}
    assert server_env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "hf-token", "key": "s3-key"}}
    await pass_preflight(cluster, actors, "missing")
    (pod,) = await actors.start_pods("missing-a1")
    await actors.waiting(pod, "CreateContainerConfigError", "couldn't find key token in Secret ml/hf-token")
    await until_phase(cluster, "missing", "Failed")

    requests = [r for r in cluster if "/secrets" not in r.url.path]
    assert all(sentinel not in f"{r.url} {r.text}" for r in requests)
    stored = [
        obj for (resource, _, _), obj in cluster.objects.items() if resource.plural != "secrets" and not obj.deleted
    ]
    assert all(sentinel not in json.dumps(obj.raw) for obj in stored)
    assert sentinel not in caplog.text
    readers = {r.headers.get("User-Agent", "") for r in cluster if "/secrets" in r.url.path}
    assert readers == {
        r.headers.get("User-Agent", "") for r in cluster if r.method.value == "POST" and "/secrets" in r.url.path
    }, "only the test itself touched Secrets"
