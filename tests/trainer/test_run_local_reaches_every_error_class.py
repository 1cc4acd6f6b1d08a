"""Each error class, reached through the real trainer (`kubetune run --local`), reads as a user needs it.

What a user sees is checked for each: the Result's class, reason and retry flag, a hint naming
what to change, the process exit code and the stage that failed. The causes are real: a checkpoint
whose tensors disagree with its config, one missing a tensor, a truncated safetensors file, a
weight that makes the loss NaN, an output volume that cannot be written, an S3 endpoint answering
500. Only a CUDA out-of-memory error needs the test-only fault hook (there is no GPU here).
InvalidInput is reached the same way in test_run_local_failures_print_class_reason_and_hint.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.classify import EXIT_CODES
from kubetune_trainer.contract import ErrorClass, JobError, Outcome, Stage
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.tiny_model import TinyModel

from .broken_repos import (
    a_layer_is_missing,
    an_infinite_weight,
    config_disagrees_with_weights,
    publish_broken,
    truncated,
)
from .failing_endpoint import serve_failing_endpoint
from .local_runs import LocalRun, chat_spec, kubetune_run, write_chat_data, write_manifest

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def _run(
    tmp_path: Path,
    *,
    repo: str,
    hf_home: Path,
    environ: dict[str, str],
    hyperparameters: dict[str, Any] | None = None,
    extra: tuple[str, ...] = (),
    **spec: Any,
) -> LocalRun:
    data = write_chat_data(tmp_path / "data", train=16, validation=4)
    job = chat_spec(repo, data, **spec)
    job["hyperparameters"] |= {"nEpochs": 1, "batchSize": 8, **(hyperparameters or {})}
    manifest = write_manifest(tmp_path / "job.yaml", name="broken", spec=job)
    return kubetune_run(manifest, workdir=tmp_path / "work", hf_home=hf_home, environ=environ, extra=extra)


def _failed(run: LocalRun, error_class: ErrorClass, reason: str, stage: Stage) -> JobError:
    assert run.returncode == EXIT_CODES[error_class], run.output
    result = run.result
    assert result.outcome is Outcome.FAILED
    assert result.exit_code == EXIT_CODES[error_class]
    assert result.error is not None
    assert (result.error.error_class, result.error.reason, result.error.stage) == (error_class, reason, stage)
    assert result.error.hint
    assert f"{error_class.value} ({reason})" in run.output  # what the terminal shows
    return result.error


def test_cuda_oom_with_auto_batch_off_fails_naming_the_setting(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    faults = FaultPlan(faults=(Fault(kind="oom", step=1),)).to_env()
    run = _run(
        tmp_path,
        repo=tiny_llama.repo_id,
        hf_home=tiny_hf_home,
        environ={**offline_env, **faults},
        hyperparameters={"autoBatchOnOOM": False},
    )

    error = _failed(run, ErrorClass.CUDA_OOM, "OutOfMemory", Stage.TRAINING)
    assert error.retryable is False
    assert error.hint is not None
    assert "hyperparameters.autoBatchOnOOM" in error.hint
    assert "lora" in error.hint
    assert "step 1" in error.message
    assert not (tmp_path / "work" / "output").exists()


def test_cuda_oom_with_one_example_per_micro_batch_fails_after_the_reductions(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    faults = FaultPlan(faults=(Fault(kind="oom"),)).to_env()  # every forward pass, whatever its size
    run = _run(tmp_path, repo=tiny_llama.repo_id, hf_home=tiny_hf_home, environ={**offline_env, **faults})

    error = _failed(run, ErrorClass.CUDA_OOM, "OutOfMemoryAtOneExample", Stage.TRAINING)
    assert error.hint is not None
    assert "hyperparameters.maxSeqLength" in error.hint
    reductions = [note for note in run.result.warnings if note.reason == "MicroBatchReduced"]
    assert reductions
    assert "one example per micro-batch" in reductions[-1].message


@pytest.mark.parametrize(
    ("damage", "shown"),
    [
        (config_disagrees_with_weights, "mlp.gate_proj.weight: checkpoint [128, 64] vs config [256, 64]"),
        (a_layer_is_missing, "model.layers.1.mlp.down_proj.weight"),
    ],
    ids=["shapes-disagree-with-config", "missing-weights"],
)
def test_weights_that_do_not_match_their_config_are_a_value_error(
    damage: Any,
    shown: str,
    *,
    tiny_llama: TinyModel,
    private_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    repo = publish_broken(
        tiny_llama, repo_id="tiny-org/mismatched", hf_home=private_hf_home, workdir=tmp_path, damage=damage
    )
    run = _run(tmp_path, repo=repo, hf_home=private_hf_home, environ=offline_env)

    error = _failed(run, ErrorClass.VALUE_ERROR, "WeightsDoNotMatchConfig", Stage.INITIALIZATION)
    assert error.retryable is False
    assert shown in error.message
    assert error.hint is not None
    assert "CausalLM" in error.hint
    assert "config.json" in error.hint
    assert "Traceback" not in run.output


def test_a_truncated_safetensors_file_is_a_runtime_error(
    tiny_llama: TinyModel, private_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    repo = publish_broken(
        tiny_llama, repo_id="tiny-org/truncated", hf_home=private_hf_home, workdir=tmp_path, damage=truncated
    )
    run = _run(tmp_path, repo=repo, hf_home=private_hf_home, environ=offline_env)

    error = _failed(run, ErrorClass.RUNTIME_ERROR, "CorruptWeights", Stage.INITIALIZATION)
    assert error.retryable is False
    assert "SafetensorError" in error.message
    assert error.hint is not None
    assert "checkpoint is complete" in error.hint


def test_a_non_finite_loss_stops_training_as_a_runtime_error(
    tiny_llama: TinyModel, private_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    repo = publish_broken(
        tiny_llama, repo_id="tiny-org/diverged", hf_home=private_hf_home, workdir=tmp_path, damage=an_infinite_weight
    )
    run = _run(tmp_path, repo=repo, hf_home=private_hf_home, environ=offline_env)

    error = _failed(run, ErrorClass.RUNTIME_ERROR, "NonFiniteLoss", Stage.TRAINING)
    assert "step 1" in error.message
    assert error.hint is not None
    assert "hyperparameters.learningRate" in error.hint
    assert not (tmp_path / "work" / "output").exists()  # nothing saved, nothing uploaded


def test_a_non_finite_loss_mid_run_stops_at_that_step(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    faults = FaultPlan(faults=(Fault(kind="nonFiniteLoss", step=2),)).to_env()
    run = _run(tmp_path, repo=tiny_llama.repo_id, hf_home=tiny_hf_home, environ={**offline_env, **faults})

    error = _failed(run, ErrorClass.RUNTIME_ERROR, "NonFiniteLoss", Stage.TRAINING)
    assert "step 2" in error.message


def test_an_output_volume_that_cannot_be_written_is_internal_and_retried(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    # The claim's mount point is a plain file: what a volume that vanished under the pod leaves.
    claim = tmp_path / "work" / "pvc" / "models"
    claim.parent.mkdir(parents=True)
    claim.write_text("not a directory")
    run = _run(
        tmp_path,
        repo=tiny_llama.repo_id,
        hf_home=tiny_hf_home,
        environ=offline_env,
        extra=("--upload",),
        output={"uri": "pvc://models/team/chat"},
    )

    error = _failed(run, ErrorClass.INTERNAL, "UploadFailed", Stage.UPLOAD)
    assert error.retryable is True
    assert error.hint is not None
    assert "output.uri" in error.hint
    assert "retried" in error.hint


def test_an_s3_endpoint_answering_500_is_internal_and_retried(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    with serve_failing_endpoint(500) as s3:
        run = _run(
            tmp_path,
            repo=tiny_llama.repo_id,
            hf_home=tiny_hf_home,
            environ={**offline_env, **S3_CREDENTIALS, "AWS_ENDPOINT_URL": s3.url},
            extra=("--upload",),
            output={"uri": "s3://models/team/chat"},
        )

    error = _failed(run, ErrorClass.INTERNAL, "UploadFailed", Stage.UPLOAD)
    assert error.retryable is True
    assert s3.requests  # the endpoint really was asked
    assert "s3://models/team/chat" in error.message
    assert error.hint is not None
    assert "retried" in error.hint
