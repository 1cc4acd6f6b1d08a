"""The real operator fails a job asking for pod additions its settings do not allow: InvalidInput naming the
field, the name and the setting, no pod created, and the value never echoed (status, Events, logs)."""

from __future__ import annotations

import json
import logging

import pytest

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, Actors
from .conftest import EVENTS, JOBS, StartOperator, job_manifest, status_of
from .journeys import until_phase

VALUE = "plain-value-never-echoed-91c2"


async def test_an_addition_outside_the_allow_list_fails_the_job_as_invalid_input(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await start_operator(pod_env_allowed=("NCCL_*",))
    await actors.apply_job(job_manifest("extra", pod={"env": [{"name": "MY_FLAG", "value": VALUE}]}))

    status = await until_phase(cluster, "extra", "Failed")
    error = status["error"]
    assert (error["class"], error["reason"]) == ("InvalidInput", "InvalidSpec")
    assert "spec.pod.env[0].name: MY_FLAG is not allowed by this installation" in error["message"]
    assert "podEnvAllowed allows: NCCL_*" in error["message"]
    assert cluster.live(JOBS, NAMESPACE, "extra-preflight") is None, "nothing runs"
    said = json.dumps(status) + json.dumps(list(cluster.live_objects(EVENTS, NAMESPACE)))
    assert "MY_FLAG" in said
    assert VALUE not in said
    assert VALUE not in caplog.text
    assert status_of(cluster, "extra")["phase"] == "Failed"
