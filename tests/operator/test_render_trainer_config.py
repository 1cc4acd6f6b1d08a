"""build_trainer_config: the one TrainerConfig the ConfigMap and `kubetune run --local` share."""

from __future__ import annotations

from kubetune_operator.render.trainer_config import build_trainer_config
from kubetune_trainer.contract import JobIdentity, ReportTarget, TrainerConfig

from .core_builders import resolved, spec, template, with_template_changes


def test_the_config_round_trips_and_names_env_vars_not_secrets() -> None:
    job = resolved(
        spec(
            fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct",
            hfModelRevision="12fd25f77366fa6b3b4b768ec3050bf629380bac",
            hfTokenSecretRef={"name": "hf-token", "key": "token"},
            validationFile="s3://data/valid.jsonl",
            hyperparameters={"nEvals": 2, "learningRate": 1e-4, "batchSize": 16},
            lora={"r": 16},
            suffix="support",
            output={"uri": "hf://my-org/support", "private": False},
        )
    )
    config = build_trainer_config(
        job,
        job=JobIdentity(namespace="local", name="support-bot", uid="local", attempt=1),
        report=ReportTarget(kind="terminal"),
    )
    assert TrainerConfig.from_json(config.to_json()) == config
    assert config.model.repo == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config.model.revision == "12fd25f77366fa6b3b4b768ec3050bf629380bac"
    assert config.model.token_env == "HF_TOKEN"
    assert config.model.template.name == "llama-2-7b-chat"
    assert config.data.validation_file == "s3://data/valid.jsonl"
    assert (config.hyperparameters.learning_rate, config.hyperparameters.batch_size) == (1e-4, 16)
    assert config.lora is not None
    assert (config.lora.r, config.lora.alpha) == (16, 32)
    assert config.output.uri == "hf://my-org/support"
    assert config.output.model_name == "SmolLM2-135M-Instruct-support"
    assert config.output.private is False
    assert config.runtime.strategy == "fsdp"
    assert config.report.kind == "terminal"
    assert config.wandb is None


def test_from_checkpoint_is_where_a_first_attempt_starts() -> None:
    job = resolved(spec(fromCheckpoint="support-bot:400"))
    identity = JobIdentity(namespace="ml", name="round-2", uid="u", attempt=1)
    config = build_trainer_config(job, job=identity, report=ReportTarget(kind="none"))
    assert config.runtime.resume_from == "support-bot:400"
    retry = build_trainer_config(job, job=identity, report=ReportTarget(kind="none"), resume_from="round-2:100")
    assert retry.runtime.resume_from == "round-2:100"


def test_the_templates_master_weights_policy_reaches_the_trainer() -> None:
    identity = JobIdentity(namespace="ml", name="j", uid="u", attempt=1)
    default = build_trainer_config(resolved(), job=identity, report=ReportTarget(kind="none"))
    assert default.runtime.master_weights == "fp32"
    base = template("llama-2-7b-chat").spec.training.to_wire()
    changed = with_template_changes("llama-2-7b-chat", training={**base, "masterWeights": "bf16-compensated"})
    config = build_trainer_config(resolved(templates=(changed,)), job=identity, report=ReportTarget(kind="none"))
    assert config.runtime.master_weights == "bf16-compensated"
