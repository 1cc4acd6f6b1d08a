"""A template's limits (Together's model limits) applied to a job's layered values.

Each check returns a concrete value even when it fails (clamped into range), and appends one
`FieldError` at the spec field a user changes, so every violation is reported at once.
"""

from __future__ import annotations

from kubetune_trainer.contract import (
    DEFAULT_DPO_BETA,
    DpoSettings,
    LoraConfig,
    LrScheduler,
    ModelFacts,
    TrainingHyperparameters,
    TrainingMethod,
)

from ..api.errors import FieldError
from ..api.resources import BaseModelTemplate
from ..api.spec import Hyperparameters, LoraSpec
from ..api.template import BatchLimits

_HYPER = "spec.hyperparameters"


def checked_lora(lora: LoraSpec, template: BaseModelTemplate, *, errors: list[FieldError]) -> LoraConfig | None:
    """LoRA as it runs (None: full fine-tuning), within the template's rank and modules."""
    limits = template.spec.limits
    if not lora.enabled:
        if limits.full_training is None:
            errors.append(
                FieldError(
                    "spec.lora.enabled",
                    "false",
                    f"template {template.name} offers only LoRA training: remove lora.enabled: false",
                )
            )
        return None
    bounds = limits.lora_training
    if bounds is None:
        errors.append(
            FieldError(
                "spec.lora.enabled",
                "true",
                f"template {template.name} offers only full fine-tuning: set lora.enabled: false",
            )
        )
        return None
    rank = lora.r if lora.r is not None else bounds.max_rank
    if rank > bounds.max_rank:
        errors.append(
            FieldError(
                "spec.lora.r",
                str(rank),
                f"must not exceed template {template.name}'s maxRank {bounds.max_rank}: set lora.r to at most "
                f"{bounds.max_rank}",
            )
        )
        rank = bounds.max_rank
    modules = list(lora.target_modules or ["all-linear"])
    unknown = [m for m in modules if m not in bounds.target_modules]
    if unknown:
        errors.append(
            FieldError(
                "spec.lora.targetModules",
                ", ".join(unknown),
                f"template {template.name} adapts only {', '.join(bounds.target_modules)}",
            )
        )
        modules = [m for m in modules if m in bounds.target_modules] or ["all-linear"]
    return LoraConfig(
        r=rank,
        alpha=lora.alpha_for(rank),
        dropout=lora.dropout if lora.dropout is not None else 0.0,
        target_modules=modules,
        merge=lora.merge if lora.merge is not None else True,
    )


def checked_hyperparameters(
    hyper: Hyperparameters,
    template: BaseModelTemplate,
    *,
    lora: bool,
    facts: ModelFacts | None,
    errors: list[FieldError],
    method: TrainingMethod = TrainingMethod.SFT,
) -> TrainingHyperparameters:
    """Every hyperparameter concrete (`batchSize: max` resolved), within the template's limits.

    For trainingMethod dpo the batch bounds are the template's DPO ones (`maxBatchSizeDpo`).
    """
    spec = template.spec
    limits = spec.limits
    learning_rate = hyper.learning_rate if hyper.learning_rate is not None else 1e-5
    if not limits.min_learning_rate <= learning_rate <= limits.max_learning_rate:
        errors.append(
            FieldError(
                f"{_HYPER}.learningRate",
                str(learning_rate),
                f"must lie within template {template.name}'s bounds "
                f"[{limits.min_learning_rate:g}, {limits.max_learning_rate:g}]",
            )
        )
        learning_rate = min(max(learning_rate, limits.min_learning_rate), limits.max_learning_rate)
    epochs = hyper.n_epochs or 1
    if epochs > limits.max_num_epochs:
        errors.append(
            FieldError(
                f"{_HYPER}.nEpochs",
                str(epochs),
                f"must not exceed template {template.name}'s maxNumEpochs {limits.max_num_epochs}",
            )
        )
        epochs = limits.max_num_epochs
    n_evals = hyper.n_evals or 0
    if n_evals > limits.max_num_evals:
        errors.append(
            FieldError(
                f"{_HYPER}.nEvals",
                str(n_evals),
                f"must not exceed template {template.name}'s maxNumEvals {limits.max_num_evals}",
            )
        )
        n_evals = limits.max_num_evals
    offered = limits.lora_training if lora else limits.full_training
    bounds = offered or BatchLimits(min_batch_size=1, max_batch_size=1)  # not offered: already an error
    if method is TrainingMethod.DPO:
        bounds = BatchLimits(min_batch_size=bounds.min_batch_size, max_batch_size=bounds.dpo_max)
    batch_size = _batch_size(hyper.batch_size, bounds, template=template, lora=lora, errors=errors, method=method)
    ranks = spec.resources.nodes * max(1, spec.resources.gpus_per_node)
    if offered is not None and batch_size < ranks:
        # Every training process needs at least one sequence per optimizer step.
        errors.append(
            FieldError(
                f"{_HYPER}.batchSize",
                str(batch_size),
                f"must be at least {ranks}, the training processes of template {template.name} "
                f"({spec.resources.nodes} node(s) x {max(1, spec.resources.gpus_per_node)} GPU(s))",
            )
        )
        batch_size = ranks
    return TrainingHyperparameters(
        n_epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        lr_scheduler=hyper.lr_scheduler or LrScheduler(),
        warmup_ratio=hyper.warmup_ratio if hyper.warmup_ratio is not None else 0.0,
        max_grad_norm=hyper.max_grad_norm if hyper.max_grad_norm is not None else 1.0,
        weight_decay=hyper.weight_decay if hyper.weight_decay is not None else 0.0,
        n_checkpoints=hyper.n_checkpoints or 1,
        n_evals=n_evals,
        train_on_inputs=hyper.train_on_inputs if hyper.train_on_inputs is not None else "auto",
        max_seq_length=_max_seq_length(hyper.max_seq_length, template=template, facts=facts, errors=errors),
        packing=hyper.packing if hyper.packing is not None else True,
        seed=hyper.seed if hyper.seed is not None else 42,
        auto_batch_on_oom=hyper.auto_batch_on_oom if hyper.auto_batch_on_oom is not None else True,
        training_method=method,
        dpo=_dpo_settings(hyper) if method is TrainingMethod.DPO else None,
    )


def _dpo_settings(hyper: Hyperparameters) -> DpoSettings:
    """Together's DPO defaults; SimPO (simpoGamma above 0) is reference-free and length-normalised."""
    gamma = hyper.simpo_gamma or 0.0
    return DpoSettings(
        beta=hyper.dpo_beta if hyper.dpo_beta is not None else DEFAULT_DPO_BETA,
        rpo_alpha=hyper.rpo_alpha or 0.0,
        simpo_gamma=gamma,
        reference_free=bool(hyper.dpo_reference_free) or gamma > 0,
        normalize_logratios_by_length=bool(hyper.dpo_normalize_logratios_by_length) or gamma > 0,
    )


def _batch_size(
    requested: int | str | None,
    bounds: BatchLimits,
    *,
    template: BaseModelTemplate,
    lora: bool,
    errors: list[FieldError],
    method: TrainingMethod = TrainingMethod.SFT,
) -> int:
    if requested is None or requested == "max":
        return bounds.max_batch_size
    size = int(requested)
    if not bounds.min_batch_size <= size <= bounds.max_batch_size:
        kind = ("LoRA" if lora else "full fine-tuning") + (" DPO" if method is TrainingMethod.DPO else "")
        errors.append(
            FieldError(
                f"{_HYPER}.batchSize",
                str(size),
                f"must lie within template {template.name}'s {kind} bounds "
                f"[{bounds.min_batch_size}, {bounds.max_batch_size}], or be `max`",
            )
        )
        return min(max(size, bounds.min_batch_size), bounds.max_batch_size)
    return size


def _max_seq_length(
    requested: int | None,
    *,
    template: BaseModelTemplate,
    facts: ModelFacts | None,
    errors: list[FieldError],
) -> int:
    """Default: the template's maximum, capped at the model's own positions once they are known."""
    ceiling = template.spec.max_seq_length
    model_limit = facts.max_positions if facts is not None else None
    if requested is None:
        return min(ceiling, model_limit) if model_limit else ceiling
    if requested > ceiling:
        errors.append(
            FieldError(
                f"{_HYPER}.maxSeqLength",
                str(requested),
                f"must not exceed template {template.name}'s maxSeqLength {ceiling}",
            )
        )
        return ceiling
    if model_limit is not None and requested > model_limit:
        errors.append(
            FieldError(
                f"{_HYPER}.maxSeqLength",
                str(requested),
                f"must not exceed the model's own {model_limit} positions (config.json)",
            )
        )
        return model_limit
    return requested
