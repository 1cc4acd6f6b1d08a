"""Together's `fine_tuning.create(...)` keyword arguments -> a FineTuneJob manifest, checked by the API models.

Pure: no cluster. An unset argument stays out of the spec, so the template's defaults (else
Together's, which kubetune shares) apply, as with `kubectl apply`. Secrets passed as plain
strings (Together's `wandb_api_key`, `hf_api_token`) never enter the manifest: they become
Secrets of the job's own (`secrets_for`), referenced by name.
"""

from __future__ import annotations

import secrets as random_names
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.errors import InvalidResourceError, validate
from ..api.names import API_VERSION
from ..api.spec import FineTuneJobSpec

WANDB_KEY = "api-key"
HF_TOKEN_KEY = "token"


class UnsupportedArgument(ValueError):
    """A Together argument kubetune cannot honour; the message says what to use instead."""


@dataclass(frozen=True)
class SecretToCreate:
    name: str
    key: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class CreateRequest:
    manifest: dict[str, Any]
    secrets: list[SecretToCreate]


def new_job_name() -> str:
    """`ft-` and 10 random hex digits: Together's ids start with `ft-`; a DNS-1035 label starts with a letter."""
    return f"ft-{random_names.token_hex(5)}"


def build_create_request(
    *,
    name: str,
    namespace: str,
    training_file: str,
    model: str | None = None,
    n_epochs: int | None = None,
    validation_file: str | None = None,
    n_evals: int | None = None,
    n_checkpoints: int | None = None,
    batch_size: int | Literal["max"] | None = None,
    learning_rate: float | None = None,
    lr_scheduler_type: Literal["linear", "cosine", "constant"] | None = None,
    min_lr_ratio: float | None = None,
    scheduler_num_cycles: float | None = None,
    warmup_ratio: float | None = None,
    max_grad_norm: float | None = None,
    weight_decay: float | None = None,
    lora: bool | None = None,
    lora_r: int | None = None,
    lora_dropout: float | None = None,
    lora_alpha: float | None = None,
    lora_trainable_modules: str | list[str] | None = None,
    lora_merge: bool | None = None,
    train_vision: bool = False,
    suffix: str | None = None,
    wandb_api_key: str | None = None,
    wandb_api_key_secret: tuple[str, str] | None = None,
    wandb_base_url: str | None = None,
    wandb_project_name: str | None = None,
    wandb_name: str | None = None,
    wandb_entity: str | None = None,
    train_on_inputs: bool | Literal["auto"] | None = None,
    training_method: str = "sft",
    from_checkpoint: str | None = None,
    from_hf_model: str | None = None,
    hf_model_revision: str | None = None,
    hf_api_token: str | None = None,
    hf_token_secret: tuple[str, str] | None = None,
    hf_output_repo_name: str | None = None,
    output_uri: str | None = None,
    checkpoint_uri: str | None = None,
    max_seq_length: int | None = None,
    packing: bool | None = None,
    seed: int | None = None,
    max_retries: int | None = None,
    active_deadline_seconds: int | None = None,
    ttl_seconds_after_finished: int | None = None,
    queue_name: str | None = None,
    priority_class_name: str | None = None,
    suspend: bool | None = None,
    labels: dict[str, str] | None = None,
) -> CreateRequest:
    """The manifest for these arguments, validated as the operator validates it (InvalidResourceError names it)."""
    if train_vision:
        raise UnsupportedArgument("train_vision=True: kubetune trains text models only; leave train_vision unset")
    if training_method != "sft":
        raise UnsupportedArgument(
            f"training_method={training_method!r}: this cluster's FineTuneJob API accepts sft only; use 'sft'"
        )
    if model is None:
        raise UnsupportedArgument(
            "model is required: a BaseModelTemplate name or alias (`kubetune templates list`), or 'auto' with "
            "from_hf_model; with from_checkpoint, the earlier job's template"
        )
    if hf_output_repo_name is not None and output_uri is not None:
        raise UnsupportedArgument("give hf_output_repo_name or output_uri, not both: both say where the model goes")
    if wandb_api_key is not None and wandb_api_key_secret is not None:
        raise UnsupportedArgument("give wandb_api_key or wandb_api_key_secret, not both")
    if hf_api_token is not None and hf_token_secret is not None:
        raise UnsupportedArgument("give hf_api_token or hf_token_secret, not both")

    to_create: list[SecretToCreate] = []
    if wandb_api_key is not None:
        to_create.append(SecretToCreate(name=f"{name}-wandb", key=WANDB_KEY, value=wandb_api_key))
        wandb_api_key_secret = (f"{name}-wandb", WANDB_KEY)
    if hf_api_token is not None:
        to_create.append(SecretToCreate(name=f"{name}-hf-token", key=HF_TOKEN_KEY, value=hf_api_token))
        hf_token_secret = (f"{name}-hf-token", HF_TOKEN_KEY)

    scheduler = _unset_dropped(type=lr_scheduler_type, minLrRatio=min_lr_ratio, numCycles=scheduler_num_cycles)
    modules = [lora_trainable_modules] if isinstance(lora_trainable_modules, str) else lora_trainable_modules
    hyperparameters = _unset_dropped(
        nEpochs=n_epochs,
        learningRate=learning_rate,
        batchSize=batch_size,
        lrScheduler=scheduler or None,
        warmupRatio=warmup_ratio,
        maxGradNorm=max_grad_norm,
        weightDecay=weight_decay,
        nCheckpoints=n_checkpoints,
        nEvals=n_evals,
        trainOnInputs=train_on_inputs,
        maxSeqLength=max_seq_length,
        packing=packing,
        seed=seed,
    )
    lora_spec = _unset_dropped(
        enabled=lora,
        r=lora_r,
        alpha=int(lora_alpha) if lora_alpha is not None else None,
        dropout=lora_dropout,
        targetModules=modules,
        merge=lora_merge,
    )
    wandb = None
    if wandb_api_key_secret is not None:
        wandb = _unset_dropped(
            apiKeySecretRef={"name": wandb_api_key_secret[0], "key": wandb_api_key_secret[1]},
            project=wandb_project_name,
            entity=wandb_entity,
            name=wandb_name,
            baseUrl=wandb_base_url,
        )
    elif any(v is not None for v in (wandb_project_name, wandb_name, wandb_base_url, wandb_entity)):
        raise UnsupportedArgument("the wandb_* settings need wandb_api_key (or wandb_api_key_secret=(secret, key))")
    output = (
        {"uri": f"hf://{hf_output_repo_name}"} if hf_output_repo_name else ({"uri": output_uri} if output_uri else None)
    )
    spec = _unset_dropped(
        model=model,
        fromHfModel=from_hf_model,
        hfModelRevision=hf_model_revision,
        hfTokenSecretRef={"name": hf_token_secret[0], "key": hf_token_secret[1]} if hf_token_secret else None,
        trainingFile=training_file,
        validationFile=validation_file or None,
        hyperparameters=hyperparameters or None,
        lora=lora_spec or None,
        suffix=suffix,
        wandb=wandb,
        output=output,
        checkpoint={"uri": checkpoint_uri} if checkpoint_uri else None,
        fromCheckpoint=from_checkpoint,
        suspend=suspend,
        maxRetries=max_retries,
        activeDeadlineSeconds=active_deadline_seconds,
        ttlSecondsAfterFinished=ttl_seconds_after_finished,
        queueName=queue_name,
        priorityClassName=priority_class_name,
    )
    validate(FineTuneJobSpec, spec, kind="FineTuneJob")  # InvalidResourceError names each bad field
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    manifest = {"apiVersion": API_VERSION, "kind": "FineTuneJob", "metadata": metadata, "spec": spec}
    return CreateRequest(manifest=manifest, secrets=to_create)


def _unset_dropped(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


__all__ = ["CreateRequest", "InvalidResourceError", "SecretToCreate", "UnsupportedArgument", "build_create_request"]
