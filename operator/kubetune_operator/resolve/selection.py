"""Choosing a template for a model (`model: auto`, `kubetune check`), as a pure function.

Order of preference, as Together's BYOM guide asks ("as close as possible to the base model
in architecture and size"):
1. templates that accept the model's `model_type` (or one of its `architectures`); failing
   that, templates of the same family (qwen3 -> qwen); failing that, every template, with
   a NoArchitectureMatch warning;
2. among those, a template whose maximum sequence length is not above the model's own is
   always preferred: training must never ask for positions the model does not have;
3. then the closest parameter count, measured as a ratio (|log(template / model)|): GPU
   memory scales with size, so 1B is as far from 3B as 3B is from 9B;
4. a model larger than every candidate gets the largest, with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from kubetune_trainer import compat
from kubetune_trainer.compat import FAMILY_OF_MODEL_TYPE, SIZE_MISMATCH_RATIO, human_count
from kubetune_trainer.contract import ModelFacts, TemplateExpectations, WarningNote, WireModel

from ..api.resources import BaseModelTemplate

__all__ = [
    "FAMILY_OF_MODEL_TYPE",
    "SIZE_MISMATCH_RATIO",
    "Recommendation",
    "expectations_of",
    "human_count",
    "mismatch_warnings",
    "recommend",
]


class Recommendation(WireModel):
    template: str = Field(description="Name of the chosen BaseModelTemplate.")
    reasons: list[str] = Field(description="Why this template, step by step.")
    warnings: list[WarningNote] = Field(description="What does not fit and what it means.")


def _accepts(template: BaseModelTemplate, facts: ModelFacts) -> bool:
    arch = template.spec.architecture
    return compat.accepts(facts, model_types=arch.model_types, architectures=arch.architectures)


def _size_distance(template: BaseModelTemplate, parameters: int) -> float:
    return abs(math.log(template.spec.parameters / max(parameters, 1)))


def recommend(facts: ModelFacts, templates: Sequence[BaseModelTemplate]) -> Recommendation:
    """The template that fits `facts` best, with reasons and warnings."""
    if not templates:
        raise ValueError("the template catalog is empty: install the chart's templates or pass --catalog")
    reasons: list[str] = []
    warnings: list[WarningNote] = []

    candidates = [t for t in templates if _accepts(t, facts)]
    family = FAMILY_OF_MODEL_TYPE.get(facts.model_type)
    if candidates:
        reasons.append(f"architecture: {len(candidates)} template(s) accept model_type {facts.model_type}")
    elif family and (candidates := [t for t in templates if t.spec.architecture.family == family]):
        reasons.append(f"architecture: no template lists {facts.model_type}; {len(candidates)} of family {family}")
    else:
        candidates = list(templates)
        warnings.append(
            WarningNote(
                reason="NoArchitectureMatch",
                message=f"no template matches model_type {facts.model_type}; the closest by size was chosen, "
                "so its GPU sizing and defaults may not suit this architecture",
            )
        )

    pool = candidates
    if facts.max_positions is not None:
        fitting = [t for t in candidates if t.spec.max_seq_length <= facts.max_positions]
        if fitting:
            if len(fitting) < len(candidates):
                reasons.append(
                    f"sequence length: {len(candidates) - len(fitting)} template(s) train sequences longer than "
                    f"the model's {facts.max_positions} positions and were set aside"
                )
            pool = fitting
        else:
            warnings.append(
                WarningNote(
                    reason="SequenceLengthCapped",
                    message=f"every candidate template trains sequences longer than the model's "
                    f"{facts.max_positions} positions; sequences are capped at {facts.max_positions}",
                )
            )

    largest = max(pool, key=lambda t: t.spec.parameters)
    if facts.parameters > largest.spec.parameters:
        chosen = largest
        warnings.append(
            WarningNote(
                reason="ModelLargerThanTemplates",
                message=f"the model has {human_count(facts.parameters)} parameters, more than every candidate "
                f"template; {chosen.name} ({human_count(chosen.spec.parameters)}) is the largest: check its GPU "
                "memory suffices, or add a larger template",
            )
        )
        reasons.append(f"size: {chosen.name} is the largest candidate")
    else:
        chosen = min(pool, key=lambda t: (_size_distance(t, facts.parameters), -t.spec.max_seq_length, t.name))
        reasons.append(
            f"size: {chosen.name} ({human_count(chosen.spec.parameters)}) is the closest of {len(pool)} to "
            f"{human_count(facts.parameters)} parameters"
        )
    return Recommendation(template=chosen.name, reasons=reasons, warnings=warnings)


def expectations_of(template: BaseModelTemplate) -> TemplateExpectations:
    """What a template expects of a model, in the contract's terms (what the trainer is told)."""
    spec = template.spec
    return TemplateExpectations(
        name=template.name,
        family=spec.architecture.family,
        model_types=list(spec.architecture.model_types),
        architectures=list(spec.architecture.architectures),
        parameters=spec.parameters,
        max_seq_length=spec.max_seq_length,
        transformers_ceiling=spec.transformers_ceiling,
        shape=spec.architecture.shape,
    )


def mismatch_warnings(facts: ModelFacts, template: BaseModelTemplate) -> list[WarningNote]:
    """How a model differs from the template a job names: warnings, never refusals (see compat)."""
    return compat.mismatch_warnings(facts, expectations_of(template))
