"""The preflight: model rules and data validation, no weights, one Result for the termination log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune_trainer.contract import (
    DataSource,
    ErrorClass,
    JobIdentity,
    ModelSource,
    Outcome,
    Result,
    RuntimeSettings,
    TemplateExpectations,
    TrainerConfig,
)
from kubetune_trainer.data import DataReport, validate_file
from kubetune_trainer.preflight import run_preflight
from kubetune_trainer.tiny_model import TinyModel, markov_sentences

from .conftest import RefusedRepos
from .local_runs import trainer_config
from .mock_hub import MockHub
from .tool_data import publish_without_tool_template, write_tool_data

OFFLINE = {"HF_HUB_OFFLINE": "1"}


def _config(
    repo: str, *, hf_home: Path, training_file: Path, template: TemplateExpectations, max_seq_length: int = 512
) -> TrainerConfig:
    base = trainer_config(training_file.parent)
    hyperparameters = base.hyperparameters.model_copy(
        update={"batch_size": 4, "n_evals": 0, "max_seq_length": max_seq_length, "seed": 0}
    )
    return base.model_copy(
        update={
            "job": JobIdentity(namespace="ml", name="tiny", uid="uid-1234"),
            "model": ModelSource(repo=repo, template=template),
            "data": DataSource(training_file=str(training_file)),
            "hyperparameters": hyperparameters,
            "runtime": RuntimeSettings(cache_dir=str(hf_home / "hub"), work_dir=str(training_file.parent / "work")),
        }
    )


@pytest.fixture
def chat_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in zip(markov_sentences(8, seed=1), markov_sentences(8, seed=2), strict=True)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_good_job_succeeds_with_facts_and_the_sequence_cap(
    tiny_llama: TinyModel, tiny_hf_home: Path, chat_file: Path, llama_template: TemplateExpectations
) -> None:
    config = _config(
        tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=chat_file, template=llama_template, max_seq_length=4096
    )
    result = run_preflight(config, environ=OFFLINE, data_validator=validate_file)

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert result.exit_code == 0
    assert result.model is not None
    assert (result.model.parameters, result.model.max_positions) == (172_352, 1024)
    assert result.model.revision_sha == tiny_llama.revision_sha
    capped = [w for w in result.warnings if w.reason == "SequenceLengthCapped"]
    assert len(capped) == 1, "one cap warning: the job's own, which says what is really used"
    assert "hyperparameters.maxSeqLength 4096" in capped[0].message
    assert "capped at 1024" in capped[0].message
    assert Result.from_termination_message(result.to_termination_message()) == result


def test_an_adapter_repo_reports_the_base_it_is_merged_into(
    tiny_adapter: TinyModel,
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    chat_file: Path,
    llama_template: TemplateExpectations,
) -> None:
    """What trains is the adapter merged into its base: no server has that model (spec.serve needs a merge)."""
    config = _config(tiny_adapter.repo_id, hf_home=tiny_hf_home, training_file=chat_file, template=llama_template)
    result = run_preflight(config, environ=OFFLINE, data_validator=validate_file)
    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert result.model is not None
    assert result.model.adapter_of == f"{tiny_llama.repo_id}@{tiny_llama.revision_sha}"
    plain = run_preflight(
        _config(tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=chat_file, template=llama_template),
        environ=OFFLINE,
        data_validator=validate_file,
    )
    assert plain.model is not None
    assert plain.model.adapter_of is None


def test_online_the_preflight_reads_config_json_and_no_weights(
    tiny_llama: TinyModel,
    mock_hub: MockHub,
    *,
    online_env: dict[str, str],
    chat_file: Path,
    tmp_path: Path,
    llama_template: TemplateExpectations,
) -> None:
    mock_hub.add("org/llama", tiny_llama.snapshot_path, sha=tiny_llama.revision_sha)
    config = _config("org/llama", hf_home=tmp_path / "hf", training_file=chat_file, template=llama_template)
    result = run_preflight(config, environ=online_env, data_validator=validate_file)
    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert mock_hub.fetched_files() == ["config.json"]


def test_a_refused_model_fails_the_preflight_as_invalid_input(
    refused_repos: RefusedRepos, chat_file: Path, llama_template: TemplateExpectations
) -> None:
    config = _config(
        "bad-org/remote-code", hf_home=refused_repos.hf_home, training_file=chat_file, template=llama_template
    )
    result = run_preflight(config, environ=OFFLINE, data_validator=validate_file)

    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.error_class, result.error.reason) == (ErrorClass.INVALID_INPUT, "RemoteCodeRefused")
    assert result.exit_code == 2
    assert "spec.fromHfModel" in (result.error.hint or "")


def test_bad_data_fails_with_its_line_numbers(
    tiny_llama: TinyModel, tiny_hf_home: Path, chat_file: Path, llama_template: TemplateExpectations
) -> None:
    with chat_file.open("a") as out:
        out.write('{"messages": [{"role": "user", "content": "hi"}]}\n')  # line 9: no assistant reply
        out.write("not json\n")  # line 10
    config = _config(tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=chat_file, template=llama_template)
    result = run_preflight(config, environ=OFFLINE, data_validator=validate_file)

    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.error_class, result.error.reason) == (ErrorClass.INVALID_INPUT, "InvalidTrainingData")
    assert "train.jsonl:9:" in result.error.message
    assert "train.jsonl:10:" in result.error.message
    assert "spec.trainingFile" in result.error.message


def test_the_data_validator_is_what_the_caller_passes(
    tiny_llama: TinyModel, tiny_hf_home: Path, chat_file: Path, llama_template: TemplateExpectations
) -> None:
    seen: list[Path] = []

    def validator(path: Path) -> DataReport:
        seen.append(path)
        return validate_file(path)

    config = _config(tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=chat_file, template=llama_template)
    assert run_preflight(config, environ=OFFLINE, data_validator=validator).outcome is Outcome.SUCCEEDED
    assert seen == [chat_file]


def test_a_missing_training_file_names_the_field(
    tiny_llama: TinyModel, tiny_hf_home: Path, tmp_path: Path, llama_template: TemplateExpectations
) -> None:
    config = _config(
        tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=tmp_path / "absent.jsonl", template=llama_template
    )
    result = run_preflight(config, environ=OFFLINE, data_validator=validate_file)
    assert result.error is not None
    assert result.error.error_class is ErrorClass.INVALID_INPUT
    assert "spec.trainingFile" in result.error.message + (result.error.hint or "")


def test_tool_data_on_a_template_that_cannot_render_tools_is_refused_naming_the_template(
    tiny_llama: TinyModel, tiny_hf_home: Path, tmp_path: Path, llama_template: TemplateExpectations
) -> None:
    repo = publish_without_tool_template(tiny_llama, hf_home=tiny_hf_home, scratch=tmp_path)
    tools = write_tool_data(tmp_path / "data", count=4)
    result = run_preflight(
        _config(repo, hf_home=tiny_hf_home, training_file=tools, template=llama_template), environ=OFFLINE
    )

    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.error_class, result.error.reason) == (
        ErrorClass.INVALID_INPUT,
        "ChatTemplateCannotRenderTools",
    )
    assert f"the chat template of chat_template.jinja of {repo}@" in result.error.message
    assert "spec.trainingFile holds function-calling data" in result.error.message


def test_tool_data_on_a_template_that_renders_tools_passes(
    tiny_llama: TinyModel, tiny_hf_home: Path, tmp_path: Path, llama_template: TemplateExpectations
) -> None:
    tools = write_tool_data(tmp_path / "data", count=4)
    config = _config(tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=tools, template=llama_template)
    result = run_preflight(config, environ=OFFLINE)
    assert result.outcome is Outcome.SUCCEEDED, result.error


def test_preference_pairs_for_an_sft_job_are_refused_naming_dpo(
    tiny_llama: TinyModel, tiny_hf_home: Path, tmp_path: Path, llama_template: TemplateExpectations
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pair = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }
    pairs.write_text(json.dumps(pair) + "\n")
    config = _config(tiny_llama.repo_id, hf_home=tiny_hf_home, training_file=pairs, template=llama_template)
    result = run_preflight(config, environ=OFFLINE)

    assert result.error is not None
    assert (result.error.error_class, result.error.reason) == (ErrorClass.INVALID_INPUT, "InvalidTrainingData")
    assert "pairs.jsonl:1: preference pairs" in result.error.message
    assert "set trainingMethod: dpo" in result.error.message
