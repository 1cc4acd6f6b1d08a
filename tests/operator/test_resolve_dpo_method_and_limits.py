"""trainingMethod dpo: Together's DPO fields, defaults and bounds, the DPO batch limits, and what the trainer gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubetune_operator.api.spec import CEL_RULES, DEFAULT_HYPERPARAMETERS, FineTuneJobSpec
from kubetune_operator.api.template import BatchLimits
from kubetune_trainer.contract import DpoSettings, TrainingMethod

from .core_builders import resolved, spec
from .test_resolve_template_limits import _errors


def test_dpo_gets_togethers_defaults() -> None:
    job = resolved(spec(trainingMethod="dpo"))
    assert job.hyperparameters.training_method is TrainingMethod.DPO
    assert job.hyperparameters.dpo == DpoSettings(
        beta=0.1, rpo_alpha=0.0, simpo_gamma=0.0, reference_free=False, normalize_logratios_by_length=False
    )


def test_sft_carries_no_dpo_settings() -> None:
    job = resolved(spec())
    assert job.hyperparameters.training_method is TrainingMethod.SFT
    assert job.hyperparameters.dpo is None
    assert "dpoBeta" not in DEFAULT_HYPERPARAMETERS.to_wire()


def test_the_dpo_fields_reach_the_trainer() -> None:
    job = resolved(
        spec(trainingMethod="dpo", hyperparameters={"dpoBeta": 0.3, "rpoAlpha": 0.5, "dpoReferenceFree": True})
    )
    assert job.hyperparameters.dpo == DpoSettings(beta=0.3, rpo_alpha=0.5, reference_free=True)
    assert job.hyperparameters.to_wire()["dpo"] == {
        "beta": 0.3,
        "rpoAlpha": 0.5,
        "simpoGamma": 0.0,
        "referenceFree": True,
        "normalizeLogratiosByLength": False,
    }


def test_simpo_is_reference_free_and_length_normalised() -> None:
    dpo = resolved(spec(trainingMethod="dpo", hyperparameters={"simpoGamma": 0.5, "dpoBeta": 2.0})).hyperparameters.dpo
    assert dpo is not None
    assert (dpo.simpo_gamma, dpo.reference_free, dpo.normalize_logratios_by_length) == (0.5, True, True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dpoBeta", 0.0, "greater than 0"),
        ("dpoBeta", -1.0, "greater than 0"),
        ("rpoAlpha", -0.1, "greater than or equal to 0"),
        ("simpoGamma", -1.0, "greater than or equal to 0"),
    ],
)
def test_dpo_fields_out_of_bounds_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(trainingMethod="dpo", hyperparameters={field: value})


@pytest.mark.parametrize("field", ["dpoBeta", "rpoAlpha", "simpoGamma", "dpoReferenceFree"])
def test_dpo_fields_with_sft_are_refused_naming_the_field(field: str) -> None:
    value: object = True if field == "dpoReferenceFree" else 0.2
    with pytest.raises(ValidationError) as refused:
        FineTuneJobSpec.parse({"model": "m", "trainingFile": "pvc://d/t.jsonl", "hyperparameters": {field: value}})
    text = str(refused.value)
    assert f"hyperparameters.{field}" in text
    assert "only trainingMethod dpo takes this field: set trainingMethod: dpo, or remove it" in text
    # The API server says the same, through a CEL rule on the field.
    assert any(rule["fieldPath"] == f".hyperparameters.{field}" for rule in CEL_RULES if isinstance(rule, dict))


def test_an_unknown_training_method_is_refused() -> None:
    with pytest.raises(ValidationError, match="'sft' or 'dpo'"):
        spec(trainingMethod="ppo")


def test_dpo_batch_max_is_half_the_sft_max_rounded_to_8() -> None:
    # The catalog's llama-2-7b-chat: LoRA [8, 64], full [8, 32].
    assert resolved(spec(trainingMethod="dpo")).hyperparameters.batch_size == 32
    assert resolved(spec(trainingMethod="dpo", lora={"enabled": False})).hyperparameters.batch_size == 16
    assert BatchLimits(min_batch_size=1, max_batch_size=8).dpo_max == 4
    assert BatchLimits(min_batch_size=8, max_batch_size=8).dpo_max == 8
    assert BatchLimits(min_batch_size=1, max_batch_size=64, max_batch_size_dpo=40).dpo_max == 40


def test_a_dpo_batch_above_the_dpo_maximum_names_the_dpo_bounds() -> None:
    (error,) = _errors(spec(trainingMethod="dpo", hyperparameters={"batchSize": 64}))
    assert error.startswith("spec.hyperparameters.batchSize:")
    assert "LoRA DPO bounds [8, 32]" in error
