"""The real operator against the emulator: status.estimate and the per-namespace GPU-hour budget.

- A namespace whose jobs have spent its budget (status.gpuSeconds of a finished job) keeps a new
  job Queued with reason BudgetExceeded and a Warning Event saying what to do, with no trainer
  Job; an operator restarted with a raised budget starts it by itself.
- The trainer's token count at DataDownload and its measured tokens/s (the catalog template declares
  none) give status.estimate; an estimate over the budget stops the attempt and waits Queued.
"""

from __future__ import annotations

import math

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import Progress, Stage

from .cluster_actors import MERGE, NAMESPACE, Actors, wait_for
from .conftest import EVENTS, FTJ, JOBS, StartOperator, job_manifest, status_of
from .journeys import pass_preflight, run_attempt

SPENT_HOURS = 10.0
TOKENS = 7_200_000


async def _finished_job_that_spent(cluster: ApiEmulator, actors: Actors, name: str, hours: float) -> None:
    """A finished FineTuneJob whose attempts held GPUs for `hours` (its record, as the operator left it)."""
    await actors.apply_job(job_manifest(name))
    url = f"/apis/kubetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs/{name}/status"
    status = {"status": {"phase": "Succeeded", "gpuSeconds": hours * 3600}}
    async with cluster.patch(url, json=status, headers=MERGE) as answer:
        assert answer.status < 400, await answer.text()


def _warnings_of(cluster: ApiEmulator, reason: str) -> list[str]:
    return [e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE) if e["reason"] == reason]


def _scheduled_reason(cluster: ApiEmulator, name: str) -> str | None:
    conditions = status_of(cluster, name).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Scheduled"), None)


async def test_a_spent_budget_keeps_a_new_job_queued_and_a_raised_one_starts_it(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    await _finished_job_that_spent(cluster, actors, "last-week", SPENT_HOURS)
    first = await start_operator(gpu_hour_budgets={NAMESPACE: 8.0}, budget_recheck_seconds=0.3)

    await pass_preflight(cluster, actors, "new-run", until_attempt=False)
    await wait_for(lambda: _scheduled_reason(cluster, "new-run") == "BudgetExceeded", what="BudgetExceeded")
    status = status_of(cluster, "new-run")
    assert (status["phase"], status.get("attempt", 0)) == ("Queued", 0)
    assert cluster.live(JOBS, NAMESPACE, "new-run-a1") is None, "no GPU pod while the budget is spent"
    (said,) = await wait_for(lambda: _warnings_of(cluster, "BudgetExceeded"), what="the BudgetExceeded Event")
    for words in ("job new-run waits", f"namespace {NAMESPACE}", "budget 8", "10 GPU-hours", "raise gpuHourBudgets"):
        assert words in said
    assert status_of(cluster, "last-week")["phase"] == "Succeeded", "a finished record is left alone"

    await first.stop()
    await start_operator(gpu_hour_budgets={NAMESPACE: 50.0}, budget_recheck_seconds=0.3)
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "new-run-a1"), what="attempt 1 once the budget is raised")
    await wait_for(lambda: _warnings_of(cluster, "BudgetAvailable"), what="the BudgetAvailable Event")


async def test_the_estimate_comes_from_data_download_and_one_over_the_budget_stops_the_attempt(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    await start_operator(gpu_hour_budgets={NAMESPACE: 1.0}, budget_recheck_seconds=0.3)
    await pass_preflight(cluster, actors, "big-data")
    await run_attempt(cluster, actors, "big-data", 1)

    await actors.report("big-data", Stage.INITIALIZATION, done=[Stage.DATA_DOWNLOAD], training_tokens=TOKENS)
    await wait_for(lambda: status_of(cluster, "big-data").get("stage") == "Initialization", what="the report")
    assert "estimate" not in status_of(cluster, "big-data"), "the catalog template declares no throughput"

    measured = Progress(step=2, total_steps=100, tokens_per_second=1000.0)
    await actors.report(
        "big-data", Stage.TRAINING, done=[Stage.DATA_DOWNLOAD, Stage.INITIALIZATION], progress=measured,
        training_tokens=TOKENS,
    )  # fmt: skip
    estimate = await wait_for(lambda: status_of(cluster, "big-data").get("estimate"), what="status.estimate")
    resolved = status_of(cluster, "big-data")["resolved"]
    gpus = resolved["nodes"] * resolved["gpusPerNode"]
    epochs = resolved["hyperparameters"]["nEpochs"]
    assert (estimate["tokens"], estimate["epochs"], estimate["gpus"], estimate["throughput"]) == (
        TOKENS, epochs, gpus, "measured",
    )  # fmt: skip
    assert math.isclose(estimate["gpuHours"], TOKENS * epochs / 1000.0 / 3600)  # all GPUs: 1000 tokens/s together
    assert estimate["gpuHours"] > 1.0

    await wait_for(lambda: _scheduled_reason(cluster, "big-data") == "BudgetExceeded", what="BudgetExceeded")
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "big-data-a1") is None, what="attempt 1's Job deleted")
    assert status_of(cluster, "big-data")["phase"] == "Queued"
    (said,) = await wait_for(lambda: _warnings_of(cluster, "BudgetExceeded"), what="the BudgetExceeded Event")
    assert "this job's estimate" in said
    assert any(
        "estimate:" in e["message"] for e in cluster.live_objects(EVENTS, NAMESPACE) if e["reason"] == "Estimated"
    )
    body = cluster.live(FTJ, NAMESPACE, "big-data")
    assert body is not None
    assert body["status"]["estimate"] == estimate, "kept while it waits"
