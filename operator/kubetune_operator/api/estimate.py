"""`status.estimate` and `kubetune estimate`'s figure: a job's GPU-hours before it trains, and what they rest on."""

from __future__ import annotations

import enum

from pydantic import Field

from kubetune_trainer.contract import WireModel


class ThroughputSource(enum.StrEnum):
    """Where the tokens/s per GPU of an estimate come from."""

    DECLARED = "declared"
    """The template's spec.training.expectedTokensPerSecondPerGpu, measured by an administrator."""
    MEASURED = "measured"
    """This job's own training: status.progress.tokensPerSecond over its GPUs."""


class CostEstimate(WireModel):
    """GPU-hours a job should take, and what the figure rests on."""

    gpu_hours: float = Field(ge=0.0, description="GPUs x hours: tokens x epochs / (tokens/s per GPU x GPUs) x GPUs.")
    hours: float = Field(ge=0.0, description="Wall-clock hours of training on all the job's GPUs.")
    tokens: int = Field(ge=0, description="Tokens in the training file, one epoch.")
    epochs: int = Field(ge=1, description="Passes over the training file.")
    gpus: int = Field(ge=1, description="GPUs the job holds: nodes x gpusPerNode.")
    tokens_per_second_per_gpu: float = Field(gt=0.0, description="The throughput the figure assumes.")
    throughput: ThroughputSource = Field(
        ThroughputSource.DECLARED,
        description="declared (the template's expectedTokensPerSecondPerGpu) or measured (this job's training).",
    )
    template: str = Field(description="The template the figure comes from.")
    basis: str = Field(description="How the tokens were counted (the tokenizer, or an approximation).")
