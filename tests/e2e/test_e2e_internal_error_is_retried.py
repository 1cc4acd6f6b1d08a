"""An Internal failure is retried: attempt 1 stalls, the step watchdog ends it, attempt 2 succeeds.

The stall is real time spent in a training step (the test-only `stall` fault, on attempt 1's
pods only); the trainer's own watchdog, with a 3 s floor set as an operator setting, fails the
run as Internal / Stalled (retryable). The operator retries after its backoff; attempt 2 has no
fault and succeeds. A user sees it all in `kubectl describe ftj`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from kubetune_trainer.faults import Fault, FaultPlan

from .models import E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import FaultsByJob, Running, e2e_sandbox
from .user_view import reasons

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    faults = FaultsByJob({("stalls", 1): FaultPlan(faults=(Fault(kind="stall", step=2, seconds=120),))})
    settings = {"KUBETUNE_STEP_WATCHDOG_FLOOR_SECONDS": "3"}
    async with e2e_sandbox(
        tmp_path_factory.mktemp("sandbox"), e2e_models, operator_env=settings, faults=faults
    ) as running:
        yield running


async def test_a_stalled_attempt_is_retried_and_attempt_two_succeeds(running: Running, e2e_models: E2eModels) -> None:
    view = running.view
    data = put_data(running.volume("datasets"), claim="datasets", source=e2e_models.train, as_name="train.jsonl")
    await view.create(finetunejob("stalls", tiny_spec(data, maxRetries=2)))

    retrying = await view.wait_until(
        "stalls", lambda s: s.get("attempt") == 2 or s.get("phase") == "Failed", timeout=180, what="attempt 2"
    )
    assert retrying["attempt"] == 2, retrying.get("error")
    status = await view.wait_for_phase("stalls", "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    assert (status["attempt"], status["retries"]) == (2, 1)
    events = await view.events("stalls", until="Completed")
    (retry,) = [event for event in events if event.reason == "Retrying"]
    assert retry.type == "Warning"
    assert "attempt 1 failed (Internal Stalled)" in retry.message
    assert "attempt 2 in 1s (retry 1 of 2)" in retry.message
    assert reasons(events).count("AttemptCreated") == 2
    assert "Completed" in reasons(events)
