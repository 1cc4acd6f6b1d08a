"""Every template limit is enforced, each violation reported at the field a user changes."""

from __future__ import annotations

import pytest

from kubetune_operator.api.resources import BaseModelTemplate
from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.resolve.resolution import Unresolved, resolve_job
from kubetune_trainer.contract import ModelFacts

from .core_builders import CATALOG, JOB, SETTINGS, resolved, spec, with_template_changes


def _errors(
    job_spec: FineTuneJobSpec,
    templates: tuple[BaseModelTemplate, ...] = CATALOG,
    facts: ModelFacts | None = None,
) -> list[str]:
    outcome = resolve_job(
        job_spec, job_name=JOB.name, namespace=JOB.namespace, templates=templates, settings=SETTINGS, facts=facts
    )
    assert outcome.job is None
    assert outcome.problem == Unresolved.TEMPLATE_LIMIT_EXCEEDED
    assert not outcome.retryable
    return outcome.field_errors


@pytest.mark.parametrize("rate", [1e-9, 0.5])
def test_learning_rate_outside_the_template_bounds(rate: float) -> None:
    (error,) = _errors(spec(hyperparameters={"learningRate": rate}))
    assert error.startswith("spec.hyperparameters.learningRate: must lie within template llama-2-7b-chat's bounds")
    assert "[1e-07, 0.01]" in error


@pytest.mark.parametrize(
    ("lora", "size", "bounds"), [(True, 4, "[8, 64]"), (True, 128, "[8, 64]"), (False, 64, "[8, 32]")]
)
def test_batch_size_outside_the_method_bounds(lora: bool, size: int, bounds: str) -> None:
    (error,) = _errors(spec(hyperparameters={"batchSize": size}, lora={"enabled": lora}))
    assert error.startswith("spec.hyperparameters.batchSize:")
    assert bounds in error
    assert ("LoRA" if lora else "full fine-tuning") in error


def test_batch_size_max_is_the_method_maximum() -> None:
    assert resolved(spec(lora={"enabled": False})).hyperparameters.batch_size == 32
    assert resolved(spec()).hyperparameters.batch_size == 64


def test_lora_rank_above_the_template_maximum() -> None:
    (error,) = _errors(spec(lora={"r": 128}))
    assert (
        error
        == "spec.lora.r: must not exceed template llama-2-7b-chat's maxRank 64: set lora.r to at most 64 (got 128)"
    )


def test_epochs_above_the_template_maximum() -> None:
    (error,) = _errors(spec(hyperparameters={"nEpochs": 21}))
    assert error == "spec.hyperparameters.nEpochs: must not exceed template llama-2-7b-chat's maxNumEpochs 20 (got 21)"


def test_evaluations_above_the_template_maximum() -> None:
    (error,) = _errors(spec(validationFile="s3://data/v.jsonl", hyperparameters={"nEvals": 101}))
    assert error.startswith("spec.hyperparameters.nEvals: must not exceed template llama-2-7b-chat's maxNumEvals 100")


def test_target_modules_outside_the_template_list() -> None:
    (error,) = _errors(spec(lora={"targetModules": ["q_proj", "lm_head"]}))
    assert error.startswith("spec.lora.targetModules: template llama-2-7b-chat adapts only")
    assert "(got lm_head)" in error


def test_a_method_the_template_does_not_offer() -> None:
    lora_only = with_template_changes(
        "llama-2-7b-chat",
        limits={
            "maxNumEpochs": 20,
            "maxNumEvals": 100,
            "minLearningRate": 1e-7,
            "maxLearningRate": 0.01,
            "loraTraining": {"minBatchSize": 8, "maxBatchSize": 64, "maxRank": 64, "targetModules": ["all-linear"]},
        },
    )
    (error,) = _errors(spec(lora={"enabled": False}), templates=(lora_only,))
    assert error.startswith("spec.lora.enabled: template llama-2-7b-chat offers only LoRA training")


def test_sequence_length_above_the_template_or_the_model() -> None:
    (error,) = _errors(spec(hyperparameters={"maxSeqLength": 8192}))
    assert error.startswith(
        "spec.hyperparameters.maxSeqLength: must not exceed template llama-2-7b-chat's maxSeqLength"
    )
    facts = ModelFacts(model_type="llama", parameters=7_000_000_000, max_positions=2048)
    (error,) = _errors(spec(hyperparameters={"maxSeqLength": 4096}), facts=facts)
    assert "the model's own 2048 positions" in error


def test_every_violation_is_reported_at_once() -> None:
    errors = _errors(spec(hyperparameters={"nEpochs": 50, "learningRate": 0.9, "batchSize": 1}, lora={"r": 512}))
    fields = {e.split(":", 1)[0] for e in errors}
    assert fields == {
        "spec.hyperparameters.nEpochs",
        "spec.hyperparameters.learningRate",
        "spec.hyperparameters.batchSize",
        "spec.lora.r",
    }


def test_a_batch_smaller_than_the_training_processes_is_refused_before_any_gpu() -> None:
    # The 70B template trains on 4 nodes x 8 GPUs: a step must feed 32 processes.
    (error,) = _errors(
        spec(model="meta-llama/Meta-Llama-3.1-70B-Instruct-Reference", hyperparameters={"batchSize": 16})
    )
    assert error.startswith("spec.hyperparameters.batchSize: must be at least 32")
    assert "4 node(s) x 8 GPU(s)" in error
