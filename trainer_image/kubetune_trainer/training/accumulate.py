"""One optimizer step's forward and backward passes: its micro-batches, gradients accumulated.

The loop (`training.loop`) decides which steps run and what happens between them; this module
runs the micro-batches of one step and returns the step's loss. Gradients are reduced across
ranks only on the last micro-batch, so accumulation costs one all-reduce per step. A step that
runs out of memory is retried here in smaller micro-batches when the policy allows
(`training.oom`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel

from ..data.packing import ModelBatch
from ..faults import optimizer_step
from .distributed import all_reduce_sum
from .fsdp_oom import FsdpOomAgreement, fsdp_oom_agreement_for, unrecoverable
from .loss import summed_label_loss
from .micro_batch_loss import MicroBatchLoss
from .oom import OomPolicy, oom_policy_for
from .precision import PrecisionPlan
from .steps import StepBatches


def accumulate_step(
    model: nn.Module,
    step: StepBatches,
    *,
    world_size: int,
    precision: PrecisionPlan,
    device: torch.device,
    scaler: torch.amp.GradScaler | None,
    oom: OomPolicy | None = None,
    micro_batch_loss: MicroBatchLoss = summed_label_loss,
) -> torch.Tensor:
    """Backpropagate every micro-batch of `step`; returns this rank's share of the step loss (float64, on `device`:
    summed there, so the micro-batches run without waiting for the device; the caller reads it once per step).

    DDP averages gradients over ranks; scaling each rank's share by the world size makes the
    result the step's summed token loss over its label tokens. Out of memory, the step starts
    over from zero gradients in the smaller micro-batches `oom` (default: the model's policy) gives.
    """
    policy = oom if oom is not None else oom_policy_for(model)
    while True:
        try:
            with optimizer_step(step.number):
                return _backward(
                    model,
                    step,
                    world_size=world_size,
                    precision=precision,
                    device=device,
                    scaler=scaler,
                    micro_batch_loss=micro_batch_loss,
                )
        except torch.OutOfMemoryError as error:
            retry = policy.smaller(step, error)
        # Outside the except block, so the failed pass's tensors (held by the traceback) are freed.
        model.zero_grad(set_to_none=True)
        if isinstance(model, FSDPModule):
            # The abandoned pass left gathered weights, hooks and accumulated unsharded gradients behind.
            model.reset_iter_state()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        step = retry


def _backward(
    model: nn.Module,
    step: StepBatches,
    *,
    world_size: int,
    precision: PrecisionPlan,
    device: torch.device,
    scaler: torch.amp.GradScaler | None,
    micro_batch_loss: MicroBatchLoss = summed_label_loss,
) -> torch.Tensor:
    divisor = max(step.label_tokens, 1) / world_size
    step_loss = torch.zeros((), dtype=torch.float64, device=device)

    def forward(micro_batch: ModelBatch) -> torch.Tensor:
        # Labels are -100 on masked prompts, padding and the first token of each example.
        with precision.autocast():
            return micro_batch_loss(model, micro_batch.to(device)) / divisor

    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()  # type: ignore[no-untyped-call]

    agreement = fsdp_oom_agreement_for(model) if world_size > 1 else None
    if agreement is not None:
        return _fsdp_backward(
            model, step, agreement, world_size=world_size, device=device, forward=forward, backward=backward
        )

    *local, synced = step.micro_batches
    # FSDP without the agreement (autoBatchOnOOM off): a rank that stops mid-forward leaves its peers
    # in an all-gather, and the flag all-reduce below would pair with it (a hang until the backend's
    # timeout). Such a rank fails at once; its process exits and torchrun stops the rest.
    agree = world_size == 1 or not isinstance(model, FSDPModule)
    # What ran out is kept as a message, never as the exception: its traceback holds the failed
    # pass's activations, and this frame holding it would make a cycle only the garbage collector
    # breaks, so the retry in smaller micro-batches would run with that memory still taken.
    ran_out: str | None = None
    try:
        for micro_batch in local:
            with gradient_sync(model, enabled=False):
                loss = forward(micro_batch)
                backward(loss)
            step_loss += loss.detach().double()
    except torch.OutOfMemoryError as error:
        if not agree:
            raise
        ran_out = str(error)
    # The last micro-batch reduces gradients across ranks: before it (and before its backward)
    # every rank says whether it ran out of memory, so none is left waiting in a collective for
    # a peer that failed.
    _raise_if_any_rank_ran_out(ran_out, world_size=world_size)
    ddp = isinstance(model, DistributedDataParallel)
    try:
        # Under DDP the forward itself runs unsynchronised too: a synchronised forward leaves the
        # reducer expecting this backward, and a step abandoned here (a peer ran out) would then
        # reduce gradients in the retry's first backward on this rank alone.
        with gradient_sync(model, enabled=not ddp):
            loss = forward(synced)
    except torch.OutOfMemoryError as error:
        if not agree:
            raise
        ran_out = str(error)
    _raise_if_any_rank_ran_out(ran_out, world_size=world_size)
    if isinstance(model, DistributedDataParallel):
        _arm_gradient_reduction(model)
    backward(loss)
    return step_loss + loss.detach().double()


def _fsdp_backward(
    model: nn.Module,
    step: StepBatches,
    agreement: FsdpOomAgreement,
    *,
    world_size: int,
    device: torch.device,
    forward: Callable[[ModelBatch], torch.Tensor],
    backward: Callable[[torch.Tensor], None],
) -> torch.Tensor:
    """`_backward` under FSDP2 with the OOM agreement (`training.fsdp_oom`): every micro-batch's forward
    ends in a check all ranks join, so an OOM in a forward is known to all before any backward starts."""
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    last = len(step.micro_batches) - 1
    for index, micro_batch in enumerate(step.micro_batches):
        with gradient_sync(model, enabled=index == last):
            loss = _agreed_forward(agreement, forward, micro_batch, world_size=world_size)
            try:
                backward(loss)
            except torch.OutOfMemoryError as error:
                raise unrecoverable("in a backward pass", world_size=world_size, error=error) from None
        step_loss += loss.detach().double()
    return step_loss


def _agreed_forward(
    agreement: FsdpOomAgreement,
    forward: Callable[[ModelBatch], torch.Tensor],
    micro_batch: ModelBatch,
    *,
    world_size: int,
) -> torch.Tensor:
    """The micro-batch's loss, once every rank said it did not run out; OutOfMemoryError on all ranks otherwise."""
    ran_out: str | None = None
    with agreement.forward_pass():
        try:
            loss = forward(micro_batch)
        except torch.OutOfMemoryError as error:
            if agreement.agreed:
                raise  # a check in the forward raised it: every rank left from that same check
            if agreement.gathering:
                raise unrecoverable(
                    "while FSDP gathered a layer's weights", world_size=world_size, error=error
                ) from None
            # Kept as a message, never the exception (its traceback holds the failed pass's activations).
            ran_out = str(error)
    # The check every rank reaches next: after the forward, or (this rank ran out) the one its peers are at.
    agreement.agree(ran_out)
    return loss


def _arm_gradient_reduction(model: DistributedDataParallel) -> None:
    """Make DDP reduce gradients in the coming backward, as its synchronised forward would have.

    What `DistributedDataParallel._post_forward` does after a forward outside `no_sync` when no
    unused parameters are searched for (`wrap_model`'s setting), done once every rank agreed.
    """
    model.require_forward_param_sync = True
    model.reducer.prepare_for_backward([])


def _raise_if_any_rank_ran_out(ran_out: str | None, *, world_size: int) -> None:
    if world_size > 1:
        flags = all_reduce_sum(torch.tensor([0.0 if ran_out is None else 1.0], dtype=torch.float64))
        if ran_out is None and flags[0] > 0:
            ran_out = f"{int(flags[0])} other training process(es) ran out of memory"
    if ran_out is not None:
        raise torch.OutOfMemoryError(ran_out)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, *, enabled: bool) -> Iterator[None]:
    """Reduce gradients across ranks only on a step's last micro-batch (DDP and FSDP2 alike)."""
    if enabled:
        yield
        return
    no_sync = getattr(model, "no_sync", None)  # DistributedDataParallel
    set_sync = getattr(model, "set_requires_gradient_sync", None)  # FSDP2 (fully_shard)
    if no_sync is not None:
        with no_sync():
            yield
    elif set_sync is not None:
        set_sync(False)
        try:
            yield
        finally:
            set_sync(True)
    else:
        yield
