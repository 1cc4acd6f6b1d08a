"""An hf:// output the job's token may not write ends the job in its preflight, before any GPU Job exists.

The real preflight runs on the config the operator rendered into the preflight's ConfigMap, against a
loopback hub that refuses the token (401, then 403); its Result goes back through the pod's
termination message, as in a cluster. The job fails InvalidInput (not retried), no attempt Job is
ever created, and the token (a Secret the test made) appears in no request, object, Event or log.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import pytest

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass, Outcome, TrainerConfig
from kubetune_trainer.preflight import run_preflight

from ..trainer.mock_hub import serve_mock_hub
from .cluster_actors import NAMESPACE, Actors, JobGone, wait_for
from .conftest import CONFIGMAPS, JOBS, RunningOperator, event_reasons, job_manifest
from .journeys import until_phase

SENTINEL = "hf_SENTINELoutputWrite0815"


def _rendered_config(cluster: ApiEmulator, preflight_job: dict[str, Any]) -> TrainerConfig:
    volumes = preflight_job["spec"]["template"]["spec"]["volumes"]
    (config_map,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    data = cluster.live(CONFIGMAPS, NAMESPACE, config_map)
    assert data is not None
    (text,) = data["data"].values()
    return TrainerConfig.parse(json.loads(text))


@pytest.mark.parametrize("refusal", [401, 403])
async def test_a_refused_upload_token_fails_the_job_in_its_preflight(
    refusal: int,
    cluster: ApiEmulator,
    actors: Actors,
    operator: RunningOperator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"}, "stringData": {"token": SENTINEL}}
    async with cluster.post(f"/api/v1/namespaces/{NAMESPACE}/secrets", json=secret) as made:
        assert made.status < 400
    await actors.apply_job(job_manifest("upload", maxRetries=2, output={"uri": "hf://acme/support-bot"}))
    preflight = await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "upload-preflight"), what="the preflight Job")

    config = _rendered_config(cluster, preflight)
    assert config.model.token_env is not None
    with serve_mock_hub() as hub:
        if refusal == 403:
            hub.identities[SENTINEL] = 403
        # What the pod's environment holds: the Secret's value under the variable the config names.
        result = run_preflight(config, environ={config.model.token_env: SENTINEL, "HF_ENDPOINT": hub.endpoint})
    assert result.outcome is Outcome.FAILED
    (pod,) = await actors.start_pods("upload-preflight")
    await actors.terminate(pod, exit_code=result.exit_code, message=result.to_termination_message())
    with contextlib.suppress(JobGone):  # the operator may remove a finished preflight Job first
        await actors.job_condition("upload-preflight", "Failed", "BackoffLimitExceeded")

    status = await until_phase(cluster, "upload", "Failed")
    error = status["error"]
    assert (error["class"], error["reason"], error["retryable"]) == (
        ErrorClass.INVALID_INPUT.value,
        "OutputAccessDenied",
        False,
    )
    assert "spec.hfTokenSecretRef" in f"{error['message']} {error['hint']}"
    assert "spec.output.uri" in f"{error['message']} {error['hint']}"
    assert status["attempt"] == 0
    assert status.get("retries", 0) == 0
    validated = {c["type"]: c for c in status["conditions"]}["Validated"]
    assert validated["status"] == "False"
    assert not [
        r for r in cluster if r.method.value == "POST" and r.url.path.endswith("/jobs") and "upload-a1" in r.text
    ], "an attempt (GPU) Job was created"
    reasons = event_reasons(cluster, "upload")
    assert "AttemptCreated" not in reasons
    assert "Retrying" not in reasons

    assert all(SENTINEL not in f"{r.url} {r.text}" for r in cluster if "/secrets" not in r.url.path)
    stored = [obj.raw for (resource, _, _), obj in cluster.objects.items() if resource.plural != "secrets"]
    assert all(SENTINEL not in json.dumps(obj) for obj in stored)
    assert SENTINEL not in caplog.text
