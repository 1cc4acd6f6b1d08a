"""GPU-hours before a job runs: its tokens x epochs over the template's declared tokens/s per GPU. Pure.

The figure is the template's `training.expectedTokensPerSecondPerGpu`, which an administrator
measures on their GPUs (a job's `status.progress.tokensPerSecond` over its GPUs gives it): the
estimate is as good as that figure, and is never made up when a template declares none.
"""

from __future__ import annotations

from pydantic import Field

from kubetune_trainer.contract import WireModel

from ..api.record import ResolvedJob

THROUGHPUT_FIELD = "spec.training.expectedTokensPerSecondPerGpu"
SECONDS_PER_HOUR = 3600.0


class EstimateUnavailable(ValueError):
    """The job's template declares no throughput: no honest estimate exists."""


class CostEstimate(WireModel):
    """GPU-hours a job should take, and what the figure rests on."""

    gpu_hours: float = Field(ge=0.0, description="GPUs x hours: tokens x epochs / (tokens/s per GPU x GPUs) x GPUs.")
    hours: float = Field(ge=0.0, description="Wall-clock hours of training on all the job's GPUs.")
    tokens: int = Field(ge=0, description="Tokens in the training file, one epoch.")
    epochs: int = Field(ge=1, description="Passes over the training file.")
    gpus: int = Field(ge=1, description="GPUs the job holds: nodes x gpusPerNode.")
    tokens_per_second_per_gpu: float = Field(gt=0.0, description="The template's declared throughput.")
    template: str = Field(description="The template the figure comes from.")
    basis: str = Field(description="How the tokens were counted (the tokenizer, or an approximation).")


def estimate_cost(job: ResolvedJob, *, tokens: int, basis: str) -> CostEstimate:
    """The estimate for `job` training `tokens` tokens per epoch; EstimateUnavailable names the missing figure."""
    template = job.template
    throughput = job.expected_tokens_per_second_per_gpu
    if throughput is None:
        raise EstimateUnavailable(
            f"template {template.name} declares no throughput: set {THROUGHPUT_FIELD} on the BaseModelTemplate "
            "(trained tokens per second per GPU, measured on your GPUs: a job's status.progress.tokensPerSecond "
            "divided by its GPUs)"
        )
    gpus = max(1, job.nodes * job.gpus_per_node)
    epochs = job.hyperparameters.n_epochs
    seconds = tokens * epochs / (throughput * gpus)
    hours = seconds / SECONDS_PER_HOUR
    return CostEstimate(
        gpu_hours=hours * gpus,
        hours=hours,
        tokens=tokens,
        epochs=epochs,
        gpus=gpus,
        tokens_per_second_per_gpu=throughput,
        template=template.name,
        basis=basis,
    )
