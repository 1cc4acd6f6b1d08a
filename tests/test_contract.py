"""The operator-trainer contract: vocabularies, the trainer config, progress, and a Result that
always fits the 4096-byte termination message."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kubetune_trainer.contract import (
    TERMINATION_MESSAGE_LIMIT,
    DataSource,
    ErrorClass,
    JobError,
    JobIdentity,
    LrScheduler,
    ModelFacts,
    ModelSource,
    Outcome,
    OutputTarget,
    Progress,
    ProgressReport,
    ReportTarget,
    Result,
    Stage,
    StageRecord,
    StageState,
    TemplateExpectations,
    TrainerConfig,
    TrainingHyperparameters,
    WarningNote,
)


def test_stages_run_in_the_documented_order() -> None:
    assert [s.value for s in Stage] == ["DataDownload", "Initialization", "Training", "Saving", "Upload"]


def test_error_classes_are_the_documented_five() -> None:
    assert {c.value for c in ErrorClass} == {"Internal", "CudaOOM", "ValueError", "RuntimeError", "InvalidInput"}


def trainer_config() -> TrainerConfig:
    return TrainerConfig(
        job=JobIdentity(namespace="ml", name="smollm-chat", uid="0b8f-uid", attempt=2),
        model=ModelSource(
            repo="HuggingFaceTB/SmolLM2-135M-Instruct",
            revision="main",
            token_env="HF_TOKEN",
            template=TemplateExpectations(
                name="llama-2-7b-chat",
                family="llama",
                model_types=["llama"],
                architectures=["LlamaForCausalLM"],
                parameters=6738415616,
                max_seq_length=4096,
                transformers_ceiling="5.23.0",
            ),
        ),
        data=DataSource(training_file="pvc://datasets/train.jsonl"),
        hyperparameters=TrainingHyperparameters(
            n_epochs=1,
            learning_rate=1e-5,
            batch_size=16,
            lr_scheduler=LrScheduler(),
            warmup_ratio=0.0,
            max_grad_norm=1.0,
            weight_decay=0.0,
            n_checkpoints=1,
            n_evals=0,
            train_on_inputs="auto",
            max_seq_length=2048,
            packing=True,
            seed=42,
        ),
        output=OutputTarget(uri="pvc://models/smollm-chat", model_name="SmolLM2-135M-Instruct-support-bot"),
        report=ReportTarget(kind="kubernetes"),
    )


def test_trainer_config_round_trips_through_the_configmap_json() -> None:
    config = trainer_config()
    text = config.to_json()
    data = json.loads(text)
    assert data["model"]["tokenEnv"] == "HF_TOKEN"
    assert data["hyperparameters"]["lrScheduler"] == {"type": "cosine", "minLrRatio": 0.0, "numCycles": 0.5}
    assert data["terminationLogPath"] == "/dev/termination-log"
    assert TrainerConfig.from_json(text) == config


def test_trainer_config_refuses_unknown_keys_and_snake_case() -> None:
    data = json.loads(trainer_config().to_json())
    data["model"]["token"] = "hf_secret"
    with pytest.raises(ValidationError, match=r"model\.token"):
        TrainerConfig.parse(data)
    data = json.loads(trainer_config().to_json())
    data["metrics_port"] = data.pop("metricsPort")
    with pytest.raises(ValidationError, match=r"metrics_port"):
        TrainerConfig.parse(data)


def test_secrets_travel_only_as_environment_variable_names() -> None:
    """No field of the config can hold a token or key: only the name of the env var that does."""

    def field_names(model: type) -> list[str]:
        names = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            names.append(name)
            for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    names.extend(field_names(arg))
        return names

    secretish = [n for n in field_names(TrainerConfig) if "token" in n or "key" in n]
    assert secretish == ["token_env", "api_key_env"]


def test_progress_report_patches_only_stage_stages_and_progress() -> None:
    now = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    report = ProgressReport(
        stage=Stage.TRAINING,
        stages=[
            StageRecord(name=Stage.DATA_DOWNLOAD, state=StageState.SUCCEEDED, start_time=now, end_time=now),
            StageRecord(name=Stage.TRAINING, state=StageState.RUNNING, start_time=now),
        ],
        progress=Progress(
            step=120, total_steps=400, loss=1.25, heartbeat_time=now, summary=Progress.summarize(120, 400)
        ),
    )
    patch = report.status_patch()
    assert set(patch) == {"status"}
    assert set(patch["status"]) == {"stage", "stages", "progress"}
    assert patch["status"]["progress"]["summary"] == "30% (120/400)"
    assert patch["status"]["progress"]["heartbeatTime"] == "2026-11-22T01:02:03Z"
    assert patch["status"]["stages"][0] == {
        "name": "DataDownload",
        "state": "Succeeded",
        "startTime": "2026-11-22T01:02:03Z",
        "endTime": "2026-11-22T01:02:03Z",
    }
    assert ProgressReport.parse(patch["status"]) == report


def test_times_are_written_in_utc_with_z() -> None:
    local = datetime(2026, 11, 22, 3, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    record = StageRecord(name=Stage.SAVING, state=StageState.RUNNING, start_time=local)
    assert record.to_wire()["startTime"] == "2026-11-22T01:00:00Z"


def test_summary_without_a_total() -> None:
    assert Progress.summarize(7, None) == "step 7"
    assert Progress.summarize(400, 400) == "100% (400/400)"


def failed(message: str, *, hint: str = "lower batchSize", warnings: int = 0) -> Result:
    return Result(
        outcome=Outcome.FAILED,
        exit_code=3,
        error=JobError(
            error_class=ErrorClass.CUDA_OOM,
            reason="CudaOutOfMemory",
            message=message,
            hint=hint,
            stage=Stage.TRAINING,
            retryable=False,
        ),
        warnings=[WarningNote(reason="TemplateSizeMismatch", message=f"warning {i} " * 20) for i in range(warnings)],
        model=ModelFacts(model_type="llama", architectures=["LlamaForCausalLM"], parameters=135_000_000),
        checkpoint_step=40,
    )


def _fits(result: Result) -> Result:
    text = result.to_termination_message()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = Result.from_termination_message(text)
    assert back.error is not None
    assert result.error is not None
    assert back.error.error_class == result.error.error_class
    assert back.error.reason == result.error.reason
    assert back.error.retryable == result.error.retryable
    assert back.checkpoint_step == result.checkpoint_step
    return back


def test_a_short_result_is_kept_whole() -> None:
    result = failed("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert Result.from_termination_message(result.to_termination_message()) == result


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("x" * 20_000, id="long-ascii"),
        pytest.param("内存不足🔥" * 3_000, id="multibyte"),
        pytest.param('"\\\n\t' * 5_000, id="escapes"),
        pytest.param("\x00\x01" * 4_000, id="control-characters"),
    ],
)
def test_long_messages_are_cut_to_fit(message: str) -> None:
    back = _fits(failed(message, hint="h" * 5_000))
    assert back.error is not None
    assert back.error.message.endswith("…")
    assert message.startswith(back.error.message[:-1]), "the start of the message is kept"


def test_many_warnings_are_dropped_and_counted() -> None:
    back = _fits(failed("oom", warnings=500))
    assert back.error is not None
    assert back.error.message == "oom"
    assert len(back.warnings) + back.warnings_omitted == 500
    assert back.warnings_omitted > 0


@settings(max_examples=60, deadline=None)
@given(
    message=st.text(min_size=1, max_size=6000),
    hint=st.text(max_size=3000),
    warnings=st.lists(st.text(min_size=1, max_size=400), max_size=40),
)
def test_any_result_fits_the_termination_message(message: str, hint: str, warnings: list[str]) -> None:
    result = failed(message, hint=hint or "h").model_copy(
        update={"warnings": [WarningNote(reason="W", message=w) for w in warnings]}
    )
    _fits(result)


def test_the_contract_imports_neither_torch_nor_kopf() -> None:
    probe = (
        "import sys, kubetune_trainer.contract; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'kopf', 'transformers', 'kubetune_operator'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
