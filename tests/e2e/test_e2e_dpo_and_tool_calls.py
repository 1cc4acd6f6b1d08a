"""Preference tuning (full and LoRA) and a tool-calling SFT job, end to end through the sandbox.

`kubectl apply` of FineTuneJobs with `trainingMethod: dpo` and of one whose data calls tools: the
real operator resolves them (DPO's defaults and batch limits), the preflight pod validates the
data against the method and the chat template against the tools, and the trainer pods train.
A user sees Succeeded, the DPO fields in `status.resolved`, and the reward metrics in
`status.progress.preference`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ..trainer.preference_data import write_preference_data
from ..trainer.tool_data import write_tool_data
from .models import E2eModels, finetunejob, put_data, tiny_spec
from .sandboxes import Running, e2e_sandbox

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory, e2e_models: E2eModels) -> AsyncIterator[Running]:
    async with e2e_sandbox(tmp_path_factory.mktemp("sandbox"), e2e_models) as running:
        sources = tmp_path_factory.mktemp("data")
        pairs, _ = write_preference_data(sources, train=16, validation=4)
        tools = write_tool_data(sources, count=16)
        volume = running.volume("datasets")
        pairs_uri = put_data(volume, claim="datasets", source=pairs, as_name="pairs.jsonl")
        tools_uri = put_data(volume, claim="datasets", source=tools, as_name="tools.jsonl")
        dpo = {"trainingMethod": "dpo", "hyperparameters": {"nEpochs": 1, "batchSize": 8, "seed": 7, "dpoBeta": 0.2}}
        await running.view.create(finetunejob("dpo-full", tiny_spec(pairs_uri, **dpo)))
        lora = {"enabled": True, "r": 8, "alpha": 16, "merge": True}
        await running.view.create(finetunejob("dpo-lora", tiny_spec(pairs_uri, lora=lora, **dpo)))
        await running.view.create(finetunejob("tools", tiny_spec(tools_uri)))
        yield running


@pytest.mark.parametrize("job", ["dpo-full", "dpo-lora"])
async def test_a_dpo_job_succeeds_and_reports_reward_metrics(running: Running, job: str) -> None:
    status = await running.view.wait_for_phase(job, "Succeeded", "Failed")

    assert status["phase"] == "Succeeded", status.get("error")
    hyper = status["resolved"]["hyperparameters"]
    assert hyper["trainingMethod"] == "dpo"
    assert hyper["dpo"]["beta"] == 0.2
    assert hyper["dpo"]["rpoAlpha"] == 0.0
    preference = status["progress"]["preference"]
    assert 0.0 <= preference["rewardAccuracy"] <= 1.0
    assert {"rewardMargin", "chosenLogps", "rejectedLogps"} <= set(preference)


async def test_a_tool_calling_job_succeeds(running: Running) -> None:
    status = await running.view.wait_for_phase("tools", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status.get("error")
    assert status["resolved"]["hyperparameters"]["trainingMethod"] == "sft"
