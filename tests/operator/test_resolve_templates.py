"""Resolving a job's template: by name, by alias, `auto` from model facts, and a missing one as an outcome."""

from __future__ import annotations

from typing import Any

from kubetune_operator.api.spec import FineTuneJobSpec, LoraSpec
from kubetune_operator.resolve.resolution import (
    PREFLIGHT_ANNOTATION,
    Resolution,
    Unresolved,
    parse_spec,
    resolve_job,
    status_resolved,
)
from kubetune_trainer.contract import ModelFacts

from .core_builders import CATALOG, JOB, SETTINGS, resolved, spec, template, with_template_changes

SMOL_FACTS = ModelFacts(
    model_type="llama",
    architectures=["LlamaForCausalLM"],
    parameters=134_515_008,
    max_positions=8192,
    revision_sha="12fd25f77366fa6b3b4b768ec3050bf629380bac",
)


def _resolve(job_spec: FineTuneJobSpec, **kwargs: Any) -> Resolution:
    return resolve_job(
        job_spec, job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=SETTINGS, **kwargs
    )


def test_a_template_is_found_by_its_object_name() -> None:
    job = resolved(spec(model="llama-2-7b-chat"))
    assert job.template.name == "llama-2-7b-chat"
    assert job.model_repo == "meta-llama/Llama-2-7b-chat-hf"


def test_a_template_is_found_by_its_alias_and_from_hf_model_is_what_trains() -> None:
    job = resolved(spec(model="togethercomputer/llama-2-7b-chat", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert job.template.name == "llama-2-7b-chat"
    assert job.model_repo == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert job.revision == "main"


def test_auto_picks_the_closest_template_from_the_model_facts() -> None:
    outcome = _resolve(spec(model="auto", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct"), facts=SMOL_FACTS)
    assert outcome.job is not None
    # SmolLM2 has 8192 positions: templates training longer sequences are set aside, then size decides.
    assert outcome.job.template.name == "llama-2-7b-chat"
    assert any(reason.startswith("sequence length") for reason in outcome.job.template_reasons)
    assert status_resolved(outcome.job, SMOL_FACTS).revision_sha == SMOL_FACTS.revision_sha


def test_auto_without_facts_waits_for_the_preflight_with_a_provisional_job_to_run_it() -> None:
    outcome = _resolve(spec(model="auto", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert outcome.job is None
    assert outcome.problem == Unresolved.AWAITING_MODEL_FACTS
    assert outcome.preflight_job is not None
    assert outcome.preflight_job.model_repo == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert not outcome.retryable


def test_auto_keeps_the_template_already_chosen_without_the_facts() -> None:
    outcome = _resolve(
        spec(model="auto", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct"), chosen_template="llama-3.2-1b-instruct"
    )
    assert outcome.job is not None
    assert outcome.job.template.name == "llama-3.2-1b-instruct"


def test_a_missing_template_is_a_retryable_outcome_naming_the_field() -> None:
    outcome = _resolve(spec(model="acme/not-installed"))
    assert outcome.job is None
    assert outcome.problem == Unresolved.TEMPLATE_NOT_FOUND
    assert outcome.retryable
    assert "acme/not-installed" in outcome.message
    assert outcome.field_errors == ["spec.model: no template answers to 'acme/not-installed'"]


def test_an_invalid_spec_is_an_outcome_listing_every_bad_field() -> None:
    outcome = parse_spec({"model": "x", "trainingFile": "ftp://nope", "hyperparameters": {"nEpochs": 0}})
    assert isinstance(outcome, Resolution)
    assert outcome.problem == Unresolved.INVALID_SPEC
    assert any(line.startswith("spec.trainingFile") for line in outcome.field_errors)
    assert any(line.startswith("spec.hyperparameters.nEpochs") for line in outcome.field_errors)


def test_template_defaults_sit_under_the_job_values() -> None:
    tuned = with_template_changes(
        "llama-2-7b-chat",
        training={
            "strategy": "fsdp",
            "hyperparameters": {"learningRate": 2e-4, "nEpochs": 3, "warmupRatio": 0.1},
            "lora": {"r": 32, "dropout": 0.1},
        },
    )
    job = resolved(
        spec(hyperparameters={"nEpochs": 5}, lora={"alpha": 8}),
        templates=(tuned,),
    )
    assert job.hyperparameters.n_epochs == 5  # the job's own value wins
    assert job.hyperparameters.learning_rate == 2e-4  # the template's default fills the gap
    assert job.hyperparameters.warmup_ratio == 0.1
    assert job.hyperparameters.seed == 42  # neither says: Together's default
    assert job.lora is not None
    assert (job.lora.r, job.lora.alpha, job.lora.dropout) == (32, 8, 0.1)


def test_unset_values_get_together_defaults_and_the_template_maximums() -> None:
    job = resolved(spec())
    limits = template("llama-2-7b-chat").spec.limits
    assert limits.lora_training is not None
    assert job.hyperparameters.batch_size == limits.lora_training.max_batch_size  # batchSize: max
    assert job.lora is not None
    assert job.lora.r == limits.lora_training.max_rank
    assert job.lora.alpha == 2 * job.lora.r
    assert job.hyperparameters.max_seq_length == template("llama-2-7b-chat").spec.max_seq_length
    assert LoraSpec().enabled is None  # the default comes from resolution, not the model


def test_the_sequence_length_default_is_capped_at_the_model_positions() -> None:
    facts = SMOL_FACTS.model_copy(update={"max_positions": 2048})
    outcome = _resolve(spec(), facts=facts)
    assert outcome.job is not None
    assert outcome.job.hyperparameters.max_seq_length == 2048
    assert "TemplateSizeMismatch" in {w.reason for w in outcome.job.warnings}


def test_no_checkpoint_location_is_a_warning_that_retries_start_over() -> None:
    assert "NoCheckpointLocation" in {w.reason for w in resolved(spec()).warnings}
    job = resolved(spec(checkpoint={"uri": "s3://ckpt/support-bot"}))
    assert job.checkpoint_uri == "s3://ckpt/support-bot"
    assert "NoCheckpointLocation" not in {w.reason for w in job.warnings}


def test_default_locations_are_scoped_by_namespace_and_job() -> None:
    settings = SETTINGS.model_copy(update={"default_checkpoint_uri": "s3://ckpt"})
    job = resolved(spec(), settings=settings)
    assert job.checkpoint_uri == "s3://ckpt/ml/support-bot"
    assert job.output_uri == "pvc://kubetune-models/ml/support-bot"
    assert job.output_name == "Llama-2-7b-chat-hf-support-bot"


def test_a_template_annotation_turns_the_preflight_off() -> None:
    base = template("llama-2-7b-chat").to_wire()
    base["metadata"]["annotations"] = {PREFLIGHT_ANNOTATION: "false"}
    off = type(template("llama-2-7b-chat")).parse(base)
    assert resolved(spec(), templates=(off,)).preflight is False
    assert resolved(spec()).preflight is True
    assert resolved(spec(), settings=SETTINGS.model_copy(update={"preflight": False})).preflight is False
