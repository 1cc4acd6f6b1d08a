"""status.estimate: the job's GPU-hours, estimated once the trainer has counted its training tokens. Pure.

Rank 0 reports the token count in the DataDownload stage record (`status.stages[].trainingTokens`);
the estimate is tokens x epochs over the template's declared tokens/s per GPU
(`spec.training.expectedTokensPerSecondPerGpu`) x the job's GPUs, the same arithmetic as
`kubetune estimate` (resolve/estimate.py). A template that declares no throughput gets the
job's own, measured once training reports `progress.tokensPerSecond`. Written once, then kept
across attempts: the figure is the job's, not an attempt's.
"""

from __future__ import annotations

from kubetune_trainer.contract import Stage

from ..api.conditions import EventNote, Reason
from ..api.estimate import CostEstimate
from ..api.record import ResolvedJob
from ..api.status import FineTuneJobStatus
from ..resolve.estimate import EstimateUnavailable, estimate_cost

TOKEN_BASIS = "counted by the trainer with the model's tokenizer at DataDownload (after truncation to maxSeqLength)"


def training_tokens(status: FineTuneJobStatus) -> int | None:
    """The token count the DataDownload stage reported, if it has."""
    return next(
        (r.training_tokens for r in status.stages if r.name == Stage.DATA_DOWNLOAD and r.training_tokens is not None),
        None,
    )


def new_estimate(status: FineTuneJobStatus, record: ResolvedJob | None) -> CostEstimate | None:
    """The estimate to store now; None when one is stored already or cannot be made yet."""
    if status.estimate is not None or record is None:
        return None
    tokens = training_tokens(status)
    if tokens is None:
        return None
    progress = status.progress
    measured = progress.tokens_per_second if status.stage == Stage.TRAINING and progress is not None else None
    try:
        return estimate_cost(record, tokens=tokens, basis=TOKEN_BASIS, measured_tokens_per_second=measured)
    except EstimateUnavailable:  # no declared throughput, none measured yet: wait for training's
        return None


def estimate_event(estimate: CostEstimate) -> EventNote:
    return EventNote.normal(
        Reason.ESTIMATED,
        f"estimate: {estimate.gpu_hours:.3g} GPU-hours ({estimate.hours:.3g} h on {estimate.gpus} GPUs): "
        f"{estimate.tokens} tokens x {estimate.epochs} epochs at {estimate.tokens_per_second_per_gpu:g} tokens/s "
        f"per GPU ({estimate.throughput})",
    )
