"""How a model compares with a template: architecture family, size and sequence length.

The one place these comparisons live. The operator's template selection (`model: auto`,
`kubetune check`) and the trainer's model rules both call it, so a job is warned about the
same differences before it is admitted and when it runs. It imports only the contract: the
operator image, which has no torch, imports it too.

Differences are warnings, never refusals: a template is infrastructure and defaults, and a
model of another size or family may still train on it.
"""

from __future__ import annotations

from collections.abc import Collection

from .contract import ModelFacts, TemplateExpectations, WarningNote

FAMILY_OF_MODEL_TYPE: dict[str, str] = {
    "llama": "llama",
    "llama4_text": "llama",
    "qwen2": "qwen",
    "qwen3": "qwen",
    "qwen2_moe": "qwen",
    "qwen3_moe": "qwen",
    "mistral": "mistral",
    "ministral": "mistral",
    "mixtral": "mixtral",
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3_text": "gemma",
    "phi": "phi",
    "phi3": "phi",
    "phimoe": "phi",
}
"""config.json `model_type` -> family, for models whose exact type no template lists."""

SIZE_MISMATCH_RATIO = 2.0
"""A model more than this factor larger or smaller than its template gets a warning."""


def human_count(parameters: int) -> str:
    """135000000 -> 135M, 6738415616 -> 6.7B."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if parameters >= scale:
            value = parameters / scale
            return f"{value:.1f}{unit}".replace(".0", "") if value < 100 else f"{value:.0f}{unit}"
    return str(parameters)


def accepts(facts: ModelFacts, *, model_types: Collection[str], architectures: Collection[str]) -> bool:
    """Whether a template listing these model types and architectures fits the model exactly."""
    return facts.model_type in model_types or bool(set(facts.architectures) & set(architectures))


def mismatch_warnings(facts: ModelFacts, template: TemplateExpectations) -> list[WarningNote]:
    """How a model differs from the template a job names: warnings, never refusals."""
    found: list[WarningNote] = []
    if not accepts(facts, model_types=template.model_types, architectures=template.architectures):
        found.append(
            WarningNote(
                reason="TemplateFamilyMismatch",
                message=f"model_type {facts.model_type} is not among template {template.name}'s "
                f"{', '.join(template.model_types)}; its defaults and LoRA target modules may not apply",
            )
        )
    ratio = template.parameters / max(facts.parameters, 1)
    if not (1 / SIZE_MISMATCH_RATIO <= ratio <= SIZE_MISMATCH_RATIO):
        found.append(
            WarningNote(
                reason="TemplateSizeMismatch",
                message=f"the model has {human_count(facts.parameters)} parameters, template {template.name} is "
                f"sized for {human_count(template.parameters)}: "
                + ("expect out-of-memory errors" if ratio < 1 else "GPUs will be underused"),
            )
        )
    if facts.max_positions is not None and template.max_seq_length > facts.max_positions:
        found.append(
            WarningNote(
                reason="SequenceLengthCapped",
                message=f"template {template.name} trains {template.max_seq_length} tokens but the model has "
                f"{facts.max_positions} positions; sequences are capped at {facts.max_positions}",
            )
        )
    return found


def capped_sequence_length(requested: int, facts: ModelFacts) -> tuple[int, WarningNote | None]:
    """The sequence length really trained: never above the model's own positions, with a warning when capped."""
    if facts.max_positions is None or requested <= facts.max_positions:
        return requested, None
    return facts.max_positions, WarningNote(
        reason="SequenceLengthCapped",
        message=f"hyperparameters.maxSeqLength {requested} is above the model's {facts.max_positions} positions; "
        f"sequences are capped at {facts.max_positions}",
    )


def with_sequence_cap(requested: int, facts: ModelFacts, warnings: list[WarningNote]) -> tuple[int, list[WarningNote]]:
    """The sequence length really trained and the warnings to carry, the job's own cap replacing the template's.

    The template's SequenceLengthCapped says what the template would train; when the job's
    `maxSeqLength` is capped too, its warning says what is really used, and one is enough.
    """
    length, capped = capped_sequence_length(requested, facts)
    if capped is None:
        return length, list(warnings)
    return length, [*(w for w in warnings if w.reason != capped.reason), capped]
