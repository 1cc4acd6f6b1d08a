"""fromCheckpoint names a FineTuneJob of the namespace: a missing one is InvalidInput before any Job;
an existing one reaches the trainer with its uid (a same-named later job's checkpoints are never read) and
its model: the repo and commit the source trained."""

from __future__ import annotations

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import TrainerConfig

from .cluster_actors import NAMESPACE, Actors, wait_for
from .conftest import CONFIGMAPS, FTJ, JOBS, RunningOperator, job_manifest, status_of
from .journeys import pass_preflight, until_phase


async def test_a_from_checkpoint_job_that_does_not_exist_fails_before_any_job(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await actors.apply_job(job_manifest("orphan", fromCheckpoint="never-was:40"))
    status = await until_phase(cluster, "orphan", "Failed")
    assert (status["error"]["class"], status["error"]["retryable"]) == ("InvalidInput", False)
    assert "spec.fromCheckpoint: no FineTuneJob 'never-was'" in status["error"]["message"]
    assert [j for j in cluster.live_objects(JOBS, NAMESPACE) if j["metadata"]["name"].startswith("orphan")] == []


async def test_the_attempt_reads_the_source_jobs_checkpoints_by_its_uid(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await pass_preflight(cluster, actors, "base-chat", fromHfModel="acme/llama-support")
    source = await wait_for(lambda: cluster.live(FTJ, NAMESPACE, "base-chat"), what="the source job")
    await pass_preflight(cluster, actors, "follow-up", fromCheckpoint="base-chat:40")
    config_map = cluster.live(CONFIGMAPS, NAMESPACE, "follow-up-a1")
    assert config_map is not None
    config = TrainerConfig.from_json(config_map["data"]["config.json"])
    assert config.runtime.from_checkpoint == f"base-chat@{source['metadata']['uid']}:40"
    resolved = status_of(cluster, "follow-up")["resolved"]
    assert resolved["record"]["fromCheckpoint"] == resolved["fromCheckpoint"] == config.runtime.from_checkpoint
    # It continues exactly what the source trained: its repo at its commit, not the template's hfModel.
    source_record = status_of(cluster, "base-chat")["resolved"]["record"]
    assert (config.model.repo, config.model.revision) == (source_record["modelRepo"], source_record["revisionSha"])
    assert config.model.repo == "acme/llama-support"
