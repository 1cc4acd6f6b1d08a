"""Resolve once, record, render from the record: a template edited after admission reaches new jobs only."""

from __future__ import annotations

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass, TrainerConfig

from .cluster_actors import MERGE, NAMESPACE, Actors, trainer_failed
from .conftest import CONFIGMAPS, JOBS, RunningOperator, status_of
from .journeys import pass_preflight, run_attempt, to_running

TEMPLATE_URL = "/apis/kubetune.dev/v1alpha1/basemodeltemplates/llama-3.2-1b-instruct"
RESOLVED_HASH = "kubetune.dev/resolved-hash"


def _config_of(cluster: ApiEmulator, name: str) -> tuple[TrainerConfig, str]:
    config_map = cluster.live(CONFIGMAPS, NAMESPACE, name)
    assert config_map is not None, f"ConfigMap {name}"
    digest = config_map["metadata"]["annotations"][RESOLVED_HASH]
    return TrainerConfig.from_json(config_map["data"]["config.json"]), digest


async def _edit_template(cluster: ApiEmulator, *, learning_rate: float, image: str) -> None:
    body = {"spec": {"image": image, "training": {"hyperparameters": {"learningRate": learning_rate}}}}
    async with cluster.patch(TEMPLATE_URL, json=body, headers=MERGE) as answer:
        assert answer.status < 400, await answer.text()


async def test_a_template_edited_before_a_retry_does_not_change_what_attempt_2_runs(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    (pod,) = await to_running(cluster, actors, "steady", maxRetries=1)
    first, first_digest = _config_of(cluster, "steady-a1")
    admitted = status_of(cluster, "steady")["resolved"]
    assert admitted["hash"] == first_digest, "status.resolved.hash names what attempt 1 runs"
    assert first.model.revision == "0" * 40, "the preflight's commit is pinned, not the branch"

    await _edit_template(cluster, learning_rate=5e-5, image="trainer:edited")
    await actors.terminate(pod, exit_code=1, message=trainer_failed(ErrorClass.INTERNAL, "Crashed", retryable=True))
    await run_attempt(cluster, actors, "steady", 2)

    second, second_digest = _config_of(cluster, "steady-a2")
    assert second.hyperparameters == first.hyperparameters, "attempt 2 trains what attempt 1 trained"
    assert second.hyperparameters.learning_rate != 5e-5
    assert second.model == first.model
    job = cluster.live(JOBS, NAMESPACE, "steady-a2")
    assert job is not None
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] != "trainer:edited"
    resolved = status_of(cluster, "steady")["resolved"]
    assert second_digest == first_digest == resolved["hash"]
    assert resolved["hyperparameters"]["learningRate"] == second.hyperparameters.learning_rate
    assert resolved["record"]["hyperparameters"] == second.hyperparameters.to_wire()


async def test_a_template_edited_reaches_a_new_job(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await _edit_template(cluster, learning_rate=5e-5, image="trainer:edited")
    await pass_preflight(cluster, actors, "fresh")
    config, digest = _config_of(cluster, "fresh-a1")
    assert config.hyperparameters.learning_rate == 5e-5
    assert status_of(cluster, "fresh")["resolved"]["hash"] == digest
