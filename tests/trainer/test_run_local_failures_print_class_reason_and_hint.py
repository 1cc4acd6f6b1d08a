"""When `kubetune run --local` fails it prints the error class, reason, message and hint, and exits non-zero.

Failures before the trainer starts (a model the rules refuse, a template the job exceeds) and
failures inside a stage (a bad data line) read the same way; the latter also leave the Result
in the termination log.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubetune_trainer.contract import ErrorClass, Outcome, Stage
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import chat_spec, kubetune_run, write_chat_data, write_manifest


def test_a_missing_model_repo_is_refused_before_training_with_the_field_and_fix(
    tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data", train=8, validation=4)
    manifest = write_manifest(tmp_path / "job.yaml", name="missing", spec=chat_spec("tiny-org/does-not-exist", data))

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 2, run.output
    assert "InvalidInput (" in run.output
    assert "tiny-org/does-not-exist" in run.output
    assert "hint: " in run.output
    assert "spec.fromHfModel" in run.output
    assert run.stage_lines() == []


def test_a_bad_training_line_fails_data_download_naming_the_line(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    train_file, validation_file = write_chat_data(tmp_path / "data", train=8, validation=4)
    lines = train_file.read_text().splitlines()
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    train_file.write_text("\n".join(lines) + "\n")
    manifest = write_manifest(
        tmp_path / "job.yaml", name="bad-data", spec=chat_spec(tiny_llama.repo_id, (train_file, validation_file))
    )

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 2, run.output
    assert run.stage_lines() == ["==> DataDownload"]
    assert "Failed in DataDownload: InvalidInput (" in run.output
    assert "train.jsonl:3: no assistant message" in run.output
    assert "Traceback" not in run.output
    assert "  hint: " in run.output
    result = run.result
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.error_class, result.error.stage) == (ErrorClass.INVALID_INPUT, Stage.DATA_DOWNLOAD)
    assert not (tmp_path / "work" / "output").exists()


def test_a_job_over_the_templates_limits_names_the_field(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data", train=8, validation=4)
    spec = chat_spec(tiny_llama.repo_id, data)
    spec["hyperparameters"]["batchSize"] = 100_000
    manifest = write_manifest(tmp_path / "job.yaml", name="too-big", spec=spec)

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 2, run.output
    assert "InvalidInput (TemplateLimitExceeded)" in run.output
    assert "spec.hyperparameters.batchSize" in run.output


def test_an_unreachable_hub_before_the_run_exits_as_internal_not_as_a_refusal(
    tmp_path: Path, offline_env: dict[str, str]
) -> None:
    data = write_chat_data(tmp_path / "data", train=8, validation=4)
    manifest = write_manifest(tmp_path / "job.yaml", name="outage", spec=chat_spec("tiny-org/not-cached", data))
    environ = {key: value for key, value in offline_env.items() if key != "HF_HUB_OFFLINE"}
    environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: connection refused at once

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tmp_path / "empty-hf", environ=environ)

    # Exit codes follow the error class (docs/trainer.md): an outage is Internal (1, retry), not InvalidInput (2).
    assert run.returncode == 1, run.output
    assert "Internal (HubUnavailable)" in run.output
    assert run.stage_lines() == []
