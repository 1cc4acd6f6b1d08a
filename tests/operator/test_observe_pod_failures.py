"""Each pod and Job state a user might meet, classified as the issue's table says (one test per row)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubetune_operator.observe.observation import RunObservation, RunState, observe, observe_run
from kubetune_trainer.classify import classify
from kubetune_trainer.contract import ErrorClass, JobError, ModelFacts, Outcome, OutputSummary, Result

from .core_builders import (
    SENTINEL_SECRET_VALUE,
    SETTINGS,
    T0,
    batch_job,
    pod,
    running,
    terminated,
)

GRACE = SETTINGS.image_pull_grace_seconds


def _run(pods: list[dict[str, Any]], *, job: dict[str, Any] | None = None, minutes: float = 0) -> RunObservation:
    return observe_run(job or batch_job(), pods, now=T0 + timedelta(minutes=minutes), image_pull_grace=GRACE)


def test_pending_unschedulable_is_queued_with_the_scheduler_message() -> None:
    message = "0/12 nodes are available: 12 Insufficient nvidia.com/gpu."
    unscheduled = pod(
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]
    )
    seen = _run([unscheduled])
    assert seen.state == RunState.UNSCHEDULABLE
    assert seen.message == message
    assert seen.error is None


def _pulling(reason: str) -> dict[str, Any]:
    return pod(
        conditions=[{"type": "PodScheduled", "status": "True"}],
        container_state={"waiting": {"reason": reason, "message": "manifest unknown"}},
        image="registry.example/kubetune/trainer:nope",
    )


def test_image_pull_errors_wait_out_the_grace_then_fail_naming_the_image() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        assert _run([_pulling(reason)], minutes=4).state == RunState.PENDING
        seen = _run([_pulling(reason)], minutes=6)
        assert seen.state == RunState.FAILED
        assert seen.error is not None
        assert (seen.error.error_class, seen.error.reason) == (ErrorClass.INTERNAL, "ImagePullFailed")
        assert "registry.example/kubetune/trainer:nope" in seen.error.message
        assert not seen.error.retryable


def test_a_missing_secret_is_invalid_input_naming_the_secret_and_key_never_a_value() -> None:
    env = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}},
    ]
    broken = pod(
        env=env,
        conditions=[{"type": "PodScheduled", "status": "True"}],
        container_state={
            "waiting": {
                "reason": "CreateContainerConfigError",
                "message": "couldn't find key token in Secret ml/hf-token",
            }
        },
    )
    seen = _run([broken])
    assert seen.state == RunState.FAILED
    assert seen.error is not None
    assert seen.error.error_class == ErrorClass.INVALID_INPUT
    assert seen.error.reason == "SecretNotReadable"
    assert "Secret hf-token key token" in seen.error.message
    assert "env HF_TOKEN" in seen.error.message
    assert "wandb" not in seen.error.message  # only the reference that failed
    assert SENTINEL_SECRET_VALUE not in seen.model_dump_json()


def test_a_missing_secret_object_is_named_too() -> None:
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]
    broken = pod(
        env=env,
        container_state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "hf-token" not found'}},
    )
    seen = _run([broken])
    assert seen.error is not None
    assert "Secret hf-token is missing" in seen.error.message


def test_an_oom_killed_container_is_host_out_of_memory_as_the_trainer_says_it() -> None:
    seen = _run([pod(phase="Failed", container_state=terminated(exit_code=137, reason="OOMKilled"))])
    assert seen.state == RunState.FAILED
    assert seen.error is not None
    # One vocabulary for host memory: the kubelet's OOMKilled reads as the trainer's MemoryError does.
    trainer = classify(MemoryError(), stage=None, job_uid="u")
    assert (
        (seen.error.error_class, seen.error.reason, seen.error.retryable, seen.error.hint)
        == (
            trainer.error_class,
            trainer.reason,
            trainer.retryable,
            trainer.hint,
        )
        == (ErrorClass.CUDA_OOM, "HostOutOfMemory", False, trainer.hint)
    )
    assert "OOMKilled" in seen.error.message
    assert trainer.hint is not None
    assert "resources.memory" in trainer.hint


def test_eviction_is_preempted_and_retryable() -> None:
    evicted = pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
    seen = _run([evicted])
    assert seen.error is not None
    assert (seen.error.error_class, seen.error.reason, seen.error.retryable) == (ErrorClass.INTERNAL, "Preempted", True)


def test_a_disruption_target_condition_is_preempted_even_with_a_trainer_result() -> None:
    result = Result(
        outcome=Outcome.FAILED,
        exit_code=143,
        error=JobError(error_class=ErrorClass.INTERNAL, reason="Terminated", message="SIGTERM", retryable=True),
    )
    preempted = pod(
        phase="Failed",
        conditions=[
            {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler", "message": "preempted"}
        ],
        container_state=terminated(exit_code=143, result=result),
    )
    seen = _run([preempted])
    assert seen.error is not None
    assert (seen.error.reason, seen.error.retryable) == ("Preempted", True)
    assert "PreemptionByScheduler" in seen.error.message


def test_node_loss_is_preempted() -> None:
    lost = pod(phase="Unknown", reason="NodeLost", message="node gpu-7 which was running the pod is unresponsive")
    seen = _run([lost])
    assert seen.error is not None
    assert seen.error.reason == "Preempted"


def test_a_termination_message_gives_the_result_and_its_class() -> None:
    result = Result(
        outcome=Outcome.FAILED,
        exit_code=1,
        error=JobError(
            error_class=ErrorClass.CUDA_OOM,
            reason="CudaOutOfMemory",
            message="CUDA out of memory",
            hint="lower batchSize",
        ),
    )
    seen = _run([pod(phase="Failed", container_state=terminated(exit_code=1, result=result))])
    assert seen.state == RunState.FAILED
    assert seen.result == result
    assert seen.error == result.error


def test_a_non_zero_exit_without_a_message_is_internal_crashed() -> None:
    seen = _run([pod(phase="Failed", container_state=terminated(exit_code=2))])
    assert seen.error is not None
    assert (seen.error.error_class, seen.error.reason, seen.error.retryable) == (ErrorClass.INTERNAL, "Crashed", True)
    assert "exited with code 2" in seen.error.message


def test_a_foreign_termination_message_is_classified_by_exit_code() -> None:
    state = terminated(exit_code=1)
    state["terminated"]["message"] = "Traceback (most recent call last): ..."
    seen = _run([pod(phase="Failed", container_state=state)])
    assert seen.error is not None
    assert seen.error.reason == "Crashed"


def test_success_with_rank_zero_result_and_pod_time() -> None:
    result = Result(
        outcome=Outcome.SUCCEEDED,
        output=OutputSummary(uri="s3://m/x", name="x", files=3, bytes=1000),
        model=ModelFacts(model_type="llama", parameters=10),
    )
    pods = [
        pod(index=1, phase="Succeeded", container_state=terminated(exit_code=0, minutes=10)),
        pod(index=0, phase="Succeeded", container_state=terminated(exit_code=0, minutes=10, result=result)),
    ]
    seen = _run(pods, job=batch_job(completions=2), minutes=30)
    assert seen.state == RunState.SUCCEEDED
    assert seen.result == result
    assert seen.pod_seconds == 2 * 600
    assert seen.finished_at == T0 + timedelta(minutes=10)
    assert seen.live_pods == 0


def test_running_needs_every_node_running() -> None:
    pods = [pod(index=0, phase="Running", container_state=running()), pod(index=1)]
    assert _run(pods, job=batch_job(completions=2)).state == RunState.PENDING
    pods[1] = pod(index=1, phase="Running", container_state=running(T0 + timedelta(minutes=1)))
    seen = _run(pods, job=batch_job(completions=2), minutes=5)
    assert seen.state == RunState.RUNNING
    assert seen.started_at == T0
    assert seen.pod_seconds == 300 + 240
    assert seen.live_pods == 2


def test_a_suspended_job_waits_for_kueue() -> None:
    assert _run([], job=batch_job(suspend=True)).state == RunState.AWAITING_ADMISSION


def test_a_failed_job_whose_pods_are_gone_is_crashed() -> None:
    failed = batch_job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
    seen = _run([], job=failed)
    assert seen.error is not None
    assert seen.error.reason == "Crashed"
    assert "BackoffLimitExceeded" in seen.error.message


def test_nothing_there_is_absent_and_the_preflight_facts_are_read() -> None:
    facts = ModelFacts(model_type="llama", parameters=134_515_008, revision_sha="abc")
    preflight = pod(
        phase="Succeeded",
        container_state=terminated(exit_code=0, result=Result(outcome=Outcome.SUCCEEDED, model=facts)),
    )
    seen = observe(
        preflight_job=batch_job(),
        preflight_pods=[preflight],
        attempt=0,
        attempt_job=None,
        attempt_pods=[],
        now=T0,
        settings=SETTINGS,
    )
    assert seen.trainer.state == RunState.ABSENT
    assert seen.preflight.state == RunState.SUCCEEDED
    assert seen.model_facts == facts


def test_pods_stopping_because_kueue_suspended_the_job_are_queueing_not_a_failure() -> None:
    stopping = pod(
        phase="Failed",
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
        container_state=terminated(exit_code=143),
    )
    seen = _run([stopping], job=batch_job(suspend=True))
    assert seen.state == RunState.AWAITING_ADMISSION
    assert seen.error is None
    assert "Kueue suspended the Job" in seen.message


def test_a_run_is_scheduled_only_once_every_pod_is_placed() -> None:
    placed = [{"type": "PodScheduled", "status": "True"}]
    assert not _run([], job=batch_job()).scheduled  # the Job's pods do not exist yet
    assert not _run([pod(index=0)], job=batch_job()).scheduled  # created, not placed
    two = [pod(index=0, conditions=placed), pod(index=1)]
    assert not _run(two, job=batch_job(completions=2)).scheduled
    two[1] = pod(index=1, conditions=placed)
    assert _run(two, job=batch_job(completions=2)).scheduled


def test_a_container_config_error_that_is_not_about_a_secret_is_not_blamed_on_one() -> None:
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]
    message = "container has runAsNonRoot and image will run as root"
    broken = pod(env=env, container_state={"waiting": {"reason": "CreateContainerConfigError", "message": message}})
    seen = _run([broken])
    assert seen.error is not None
    assert (seen.error.error_class, seen.error.reason) == (ErrorClass.INTERNAL, "ContainerConfigInvalid")
    assert message in seen.error.message
    assert "hf-token" not in seen.error.message
