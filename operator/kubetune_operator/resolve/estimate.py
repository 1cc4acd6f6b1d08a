"""GPU-hours before a job runs: its tokens x epochs over the template's declared tokens/s per GPU. Pure.

The figure is the template's `training.expectedTokensPerSecondPerGpu`, which an administrator
measures on their GPUs (a job's `status.progress.tokensPerSecond` over its GPUs gives it): the
estimate is as good as that figure, and is never made up when a template declares none. A running
job without one is estimated from its own measured throughput once training reports it (the
operator's status.estimate says which: `throughput: declared` or `measured`).
"""

from __future__ import annotations

from ..api.estimate import CostEstimate, ThroughputSource
from ..api.record import ResolvedJob

__all__ = ["CostEstimate", "EstimateUnavailable", "ThroughputSource", "estimate_cost"]

THROUGHPUT_FIELD = "spec.training.expectedTokensPerSecondPerGpu"
SECONDS_PER_HOUR = 3600.0


class EstimateUnavailable(ValueError):
    """The job's template declares no throughput: no honest estimate exists."""


def estimate_cost(
    job: ResolvedJob, *, tokens: int, basis: str, measured_tokens_per_second: float | None = None
) -> CostEstimate:
    """The estimate for `job` training `tokens` tokens per epoch; EstimateUnavailable names the missing figure.

    The template's declared throughput comes first; without one, `measured_tokens_per_second` (the
    job's own, all GPUs together: status.progress.tokensPerSecond) gives it per GPU.
    """
    template = job.template
    gpus = max(1, job.nodes * job.gpus_per_node)
    throughput = job.expected_tokens_per_second_per_gpu
    source = ThroughputSource.DECLARED
    if throughput is None and measured_tokens_per_second:
        throughput, source = measured_tokens_per_second / gpus, ThroughputSource.MEASURED
    if throughput is None:
        raise EstimateUnavailable(
            f"template {template.name} declares no throughput: set {THROUGHPUT_FIELD} on the BaseModelTemplate "
            "(trained tokens per second per GPU, measured on your GPUs: a job's status.progress.tokensPerSecond "
            "divided by its GPUs)"
        )
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
        throughput=source,
        template=template.name,
        basis=basis,
    )
