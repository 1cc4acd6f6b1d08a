"""`kubetune run --local` runs preference tuning (full and LoRA) and a tool-calling SFT job end to end.

The preference set is learnable: the preferred output continues the user's sentence along the
word chain the tiny tokenizers were trained on, the non-preferred one is the same words reversed.
DPO must learn to prefer the first: the reward accuracy over the last epoch's steps rises well
above 0.5 (a model equal to its reference scores 0: every margin is 0). The run's stages, its
termination message and the saved model are checked as a user would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from kubetune_trainer.contract import ErrorClass, Outcome
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import STAGE_LINES, kubetune_run, model_card_lineage, write_manifest
from .preference_data import write_preference_data
from .tool_data import publish_without_tool_template, write_tool_data


def dpo_spec(repo: str, data: tuple[Path, Path], *, lora: bool, output: Path) -> dict[str, Any]:
    train_file, validation_file = data
    return {
        "model": "auto",
        "fromHfModel": repo,
        "trainingFile": str(train_file),
        "validationFile": str(validation_file),
        "trainingMethod": "dpo",
        "hyperparameters": {
            "nEpochs": 3,
            "batchSize": 8,
            "learningRate": 1e-2 if lora else 2e-3,
            "nEvals": 1,
            "nCheckpoints": 2,
            "seed": 7,
            "dpoBeta": 0.1,
        },
        "lora": {"enabled": lora, "r": 8, "alpha": 16, "merge": True} if lora else {"enabled": False},
        "checkpoint": {"uri": str(output.parent / "checkpoints")},
        "output": {"uri": str(output)},
        "suffix": "dpo",
    }


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_dpo_learns_the_preference_and_saves_a_model(
    lora: bool, tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_preference_data(tmp_path / "data")
    output = tmp_path / "models" / "dpo"
    manifest = write_manifest(
        tmp_path / "job.yaml", name="tiny-dpo", spec=dpo_spec(tiny_llama.repo_id, data, lora=lora, output=output)
    )

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 0, run.output
    assert run.stage_lines() == STAGE_LINES
    assert run.result.outcome is Outcome.SUCCEEDED
    assert "reward acc" in run.output  # the progress line shows the preference metrics
    metrics = model_card_lineage(output)["metrics"]
    assert metrics["reward_accuracy"] > 0.8, metrics
    assert metrics["reward_margin"] > 0, metrics
    assert metrics["chosen_logps"] > metrics["rejected_logps"], metrics
    assert metrics["eval_loss"] < metrics["eval_loss_before"], metrics
    AutoModelForCausalLM.from_pretrained(output)
    # Full fine-tuning keeps its reference log-probabilities in every checkpoint, for a resume.
    checkpoints = sorted((tmp_path / "models" / "checkpoints" / "tiny-dpo").glob("*/step-*"))  # <job>/<uid>/step-<N>
    assert len(checkpoints) == 2
    kept = {path.name for path in checkpoints[-1].iterdir()}
    assert ("reference_logps.pt" in kept) is (not lora)


def test_a_tool_calling_sft_job_trains(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    train_file = write_tool_data(tmp_path / "data")
    output = tmp_path / "models" / "tools"
    spec = {
        "model": "auto",
        "fromHfModel": tiny_llama.repo_id,
        "trainingFile": str(train_file),
        "hyperparameters": {"nEpochs": 1, "batchSize": 8, "learningRate": 3e-3, "seed": 7},
        "lora": {"enabled": False},
        "output": {"uri": str(output)},
    }
    run = kubetune_run(
        write_manifest(tmp_path / "job.yaml", name="tiny-tools", spec=spec),
        workdir=tmp_path / "work",
        hf_home=tiny_hf_home,
        environ=offline_env,
    )
    assert run.returncode == 0, run.output
    assert run.stage_lines() == STAGE_LINES
    assert run.result.outcome is Outcome.SUCCEEDED
    AutoModelForCausalLM.from_pretrained(output)


@pytest.fixture
def no_tools_model(tiny_llama: TinyModel, tiny_hf_home: Path, tmp_path: Path) -> str:
    return publish_without_tool_template(tiny_llama, hf_home=tiny_hf_home, scratch=tmp_path)


def test_tool_data_on_a_template_without_tools_is_refused_before_training(
    no_tools_model: str, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    spec = {
        "model": "auto",
        "fromHfModel": no_tools_model,
        "trainingFile": str(write_tool_data(tmp_path / "data", count=8)),
        "hyperparameters": {"nEpochs": 1, "batchSize": 8},
        "lora": {"enabled": False},
    }
    run = kubetune_run(
        write_manifest(tmp_path / "job.yaml", name="tiny-no-tools", spec=spec),
        workdir=tmp_path / "work",
        hf_home=tiny_hf_home,
        environ=offline_env,
    )
    assert run.returncode != 0, run.output
    error = run.result.error
    assert error is not None
    assert (error.error_class, error.reason) == (ErrorClass.INVALID_INPUT, "ChatTemplateCannotRenderTools")
    assert "tiny-org/tiny-llama-no-tools" in error.message
    assert "it leaves out the tools offered, the assistant's tool calls" in error.message
    assert run.stage_lines() == ["==> DataDownload"]
