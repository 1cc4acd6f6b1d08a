"""Every error class, reached for real through the sandbox, as `kubectl describe ftj` shows it.

InvalidInput stops in the CPU preflight, before any trainer (GPU) pod exists; CudaOOM comes from
the test-only fault hook (no GPU here); ValueError and RuntimeError from checkpoints broken the
ways real uploads break. Every job allows 2 retries, and none of these is retried: `status.attempt`
stays 1 (0 for a preflight refusal) and `retries` 0, with no `Retrying` Event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kubetune_operator.render.labels import TRAINER
from kubetune_trainer.faults import Fault, FaultPlan

from .models import DIVERGED, MALFORMED_DATA, MISMATCHED, REMOTE_CODE, E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import FaultsByJob, Running, e2e_sandbox
from .user_view import reasons

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    faults = FaultsByJob({("oom", 1): FaultPlan(faults=(Fault(kind="oom", step=1),))})
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models, faults=faults) as running:
        volume = running.volume("datasets")
        good = put_data(volume, claim="datasets", source=e2e_models.train, as_name="train.jsonl")
        bad = put_data(volume, claim="datasets", source=MALFORMED_DATA, as_name="broken.jsonl")
        # maxRetries 2: retries are allowed, so "not retried" is the operator's decision, not the spec's.
        jobs = {
            "remote-code": tiny_spec(good, repo=REMOTE_CODE, maxRetries=2),
            "bad-data": tiny_spec(bad, maxRetries=2),
            "oom": tiny_spec(good, hyperparameters={"batchSize": 8, "autoBatchOnOOM": False}, maxRetries=2),
            "mismatched": tiny_spec(good, repo=MISMATCHED, maxRetries=2),
            "diverged": tiny_spec(good, repo=DIVERGED, maxRetries=2),
        }
        for name, spec in jobs.items():
            await running.view.create(finetunejob(name, spec))
        yield running


async def assert_stopped_in_preflight(running: Running, name: str) -> dict[str, object]:
    view = running.view
    status = await view.wait_for_phase(name, "Failed", "Succeeded")
    assert status["phase"] == "Failed"
    assert status["attempt"] == 0  # no attempt ever started: no trainer Job, no GPU pod
    assert await view.pods(name, component=TRAINER) == []
    trainer_job_posts = [
        request
        for request in running.sandbox.emulator.writes()
        if request.method.value == "POST" and request.url.path.endswith("/jobs") and f"{name}-a1" in request.text
    ]
    assert trainer_job_posts == []
    happened = reasons(await view.events(name))
    assert "PreflightRunning" in happened
    assert "AttemptCreated" not in happened
    assert "Retrying" not in happened
    assert status.get("retries", 0) == 0
    error: dict[str, object] = status["error"]
    assert error["class"] == "InvalidInput"
    assert error["retryable"] is False
    return error


async def test_a_remote_code_model_is_refused_in_preflight(running: Running) -> None:
    error = await assert_stopped_in_preflight(running, "remote-code")

    assert error["reason"] == "RemoteCodeRefused"
    assert "auto_map" in str(error["message"])
    assert error["hint"]
    table = await running.view.kubectl("get", "ftj", "remote-code", "-o", "wide")
    assert "InvalidInput" in table
    assert "RemoteCodeRefused" in table


async def test_a_malformed_data_file_is_refused_in_preflight_naming_the_line(running: Running) -> None:
    error = await assert_stopped_in_preflight(running, "bad-data")

    assert "broken.jsonl" in str(error["message"])
    assert "not valid JSON" in str(error["message"])
    assert error["hint"]


async def failed_once(running: Running, name: str) -> dict[str, object]:
    status = await running.view.wait_for_phase(name, "Failed", "Succeeded")
    assert status["phase"] == "Failed"
    assert (status["attempt"], status.get("retries", 0)) == (1, 0)
    error: dict[str, object] = status["error"]
    events = await running.view.events(name, until=str(error["reason"]))
    assert "Retrying" not in reasons(events)
    (failure,) = [event for event in events if event.reason == error["reason"]]
    assert failure.type == "Warning"
    assert failure.message.startswith(f"{error['class']}: ")
    assert f"Hint: {error['hint']}" in failure.message
    assert error["retryable"] is False
    assert error["hint"]
    described = await running.view.kubectl("describe", "ftj", name)
    assert str(error["class"]) in described
    assert str(error["reason"]) in described
    return error


async def test_cuda_oom_from_the_fault_hook_fails_naming_the_setting(running: Running) -> None:
    error = await failed_once(running, "oom")

    assert (error["class"], error["reason"], error["stage"]) == ("CudaOOM", "OutOfMemory", "Training")
    assert "hyperparameters.autoBatchOnOOM" in str(error["hint"])


async def test_weights_that_disagree_with_config_are_a_value_error(running: Running) -> None:
    error = await failed_once(running, "mismatched")

    assert (error["class"], error["reason"], error["stage"]) == (
        "ValueError",
        "WeightsDoNotMatchConfig",
        "Initialization",
    )
    assert "mlp.gate_proj.weight" in str(error["message"])


async def test_an_infinite_weight_is_a_runtime_error(running: Running) -> None:
    error = await failed_once(running, "diverged")

    assert (error["class"], error["reason"], error["stage"]) == ("RuntimeError", "NonFiniteLoss", "Training")
    assert not (running.volume("kubetune-models") / "default" / "diverged").exists()
