"""Together's field names and defaults, layered: the job's value, else the template's, else Together's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from kubetune_operator.api.resources import BaseModelTemplate, FineTuneJob
from kubetune_operator.api.spec import DEFAULT_HYPERPARAMETERS, DEFAULT_LORA, FineTuneJobSpec, Hyperparameters, LoraSpec
from kubetune_trainer.contract import LrScheduler, LrSchedulerType, TrainerConfig


def test_global_defaults_are_togethers() -> None:
    assert DEFAULT_HYPERPARAMETERS.to_wire() == {
        "nEpochs": 1,
        "learningRate": 1e-5,
        "batchSize": "max",
        "lrScheduler": {"type": "cosine", "minLrRatio": 0.0, "numCycles": 0.5},
        "warmupRatio": 0.0,
        "maxGradNorm": 1.0,
        "weightDecay": 0.0,
        "nCheckpoints": 1,
        "nEvals": 0,
        "trainOnInputs": "auto",
        "packing": True,
        "seed": 42,
        "autoBatchOnOOM": True,  # kubetune's own: Together has no such setting
    }
    assert DEFAULT_LORA.enabled is True
    assert DEFAULT_LORA.target_modules == ["all-linear"]
    assert DEFAULT_LORA.dropout == 0.0


def minimal_spec(**extra: object) -> FineTuneJobSpec:
    return FineTuneJobSpec.parse({"model": "qwen3-4b", "trainingFile": "pvc://data/train.jsonl", **extra})


def test_absent_values_fall_through_template_defaults_to_togethers() -> None:
    job = minimal_spec(hyperparameters={"nEpochs": 3})
    template_defaults = Hyperparameters.parse({"learningRate": 2e-4, "nEpochs": 5, "batchSize": 32})

    effective = job.hyperparameters.layered_over(template_defaults.layered_over(DEFAULT_HYPERPARAMETERS))

    assert effective.n_epochs == 3, "the job's own value wins"
    assert effective.learning_rate == 2e-4, "then the template's"
    assert effective.batch_size == 32
    assert effective.warmup_ratio == 0.0, "then Together's"
    assert effective.lr_scheduler == LrScheduler(type=LrSchedulerType.COSINE, min_lr_ratio=0.0, num_cycles=0.5)


def test_lora_alpha_defaults_to_twice_the_rank() -> None:
    assert LoraSpec.parse({"r": 16}).alpha_for(16) == 32
    assert LoraSpec.parse({"r": 16, "alpha": 8}).alpha_for(16) == 8
    assert LoraSpec.parse({}).layered_over(DEFAULT_LORA).alpha_for(64) == 128


def test_a_minimal_job_trains_lora_with_sft() -> None:
    spec = minimal_spec()
    assert spec.training_method == "sft"
    assert spec.lora.layered_over(DEFAULT_LORA).enabled is True
    assert spec.suspend is False
    assert spec.max_retries == 2


@pytest.mark.parametrize("value", [1, 8, 512, "max"])
def test_batch_size_is_a_positive_integer_or_max(value: int | str) -> None:
    assert minimal_spec(hyperparameters={"batchSize": value}).hyperparameters.batch_size == value


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_train_on_inputs_is_true_false_or_auto(value: bool | str) -> None:
    assert minimal_spec(hyperparameters={"trainOnInputs": value}).hyperparameters.train_on_inputs == value


def test_suffix_holds_up_to_40_characters() -> None:
    assert minimal_spec(suffix="s" * 40).suffix == "s" * 40
    with pytest.raises(ValidationError, match="at most 40 characters"):
        minimal_spec(suffix="s" * 41)


def test_models_are_frozen() -> None:
    spec = minimal_spec()
    with pytest.raises(ValidationError, match="frozen"):
        spec.model = "other"  # type: ignore[misc]


def models_in(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> Iterator[type[BaseModel]]:
    seen = seen if seen is not None else set()
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            for inner in [arg, *getattr(arg, "__args__", ())]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from models_in(inner, seen)


@pytest.mark.parametrize("root", [FineTuneJob, BaseModelTemplate, TrainerConfig])
def test_every_field_is_described_frozen_strict_and_camel_case(root: type[BaseModel]) -> None:
    for model in models_in(root):
        assert model.model_config.get("frozen") is True, model
        assert model.model_config.get("extra") in ("forbid", "ignore"), model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            alias = field.alias or name
            assert "_" not in alias, f"{model.__name__}.{name} is not camelCase on the wire"
