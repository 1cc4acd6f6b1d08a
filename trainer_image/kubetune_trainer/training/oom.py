"""Out-of-memory remediation (`hyperparameters.autoBatchOnOOM`): retry a step in smaller micro-batches.

A step whose forward or backward pass runs out of accelerator memory is retried in-process with
half the micro-batch token budget: the same examples in twice the micro-batches, so gradient
accumulation doubles while the effective batch (`batchSize`) and the loss, normalised by the
step's label tokens, stay exactly what they were. The smaller budget holds for the rest of the
run, later epochs included. Below one example per micro-batch nothing is left to split, and the
run fails as CudaOOM.

A resumed run (a retry after a preemption) starts again at the plan's budget: checkpoints do not
record the reduction, and the retry may land on a GPU with more free memory. If it runs out
again, the first step halves again (one failed pass per halving) and the resumed run's Result
carries its own MicroBatchReduced warning; the losses are unaffected either way.

Under DDP every rank retries together. Each forward and backward pass of a step's micro-batches
runs without a collective except the last micro-batch's backward (the gradient all-reduce);
before that backward, and after the rank's other micro-batches, one all-reduce of an "ran out"
flag tells every rank whether any of them ran out (`training.accumulate`). Then all ranks start
the step over, and the smaller budget is agreed with one all-reduce per halving (the largest
micro-batch over all ranks, and whether every rank is down to one example per micro-batch), so
every rank re-plans the same step at the same budget and no rank waits in a collective its peers
skipped. An out-of-memory error inside the last backward itself (during the gradient all-reduce)
is not recoverable this way and fails the run.

Under FSDP2 the forward pass itself is a sequence of collectives (each block's weights are
gathered as it runs), so a rank that stops mid-forward would leave its peers inside an all-gather
it never joins. With autoBatchOnOOM on, `training.fsdp_oom` puts a flag check in front of every
all-gather and after every micro-batch's forward, so every rank leaves a forward that ran out from
the same check; the halving is then agreed as above. An OOM inside FSDP's own all-gather or in a
backward pass still fails the run at once on every rank (torchrun stops the others); so does any
OOM under FSDP with autoBatchOnOOM off (no checks are installed then).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..classify import OOM_HINT
from ..errors import OutOfMemory
from .steps import StepBatches


@dataclass(frozen=True)
class MicroBatchReduction:
    """What a remediation changed, for the warning a user reads."""

    step: int
    token_budget: int
    micro_batches: int
    one_example_each: bool

    def message(self) -> str:
        size = (
            "one example per micro-batch"
            if self.one_example_each
            else f"a micro-batch budget of {self.token_budget} tokens"
        )
        return (
            f"Out of memory at step {self.step}: retried the step with {size} ({self.micro_batches} micro-batches on "
            "this process) and kept it for the rest of training; the effective batch (batchSize) is unchanged."
        )


@dataclass(frozen=True)
class OomPolicy:
    """Whether and how a step that ran out of memory is retried."""

    auto_batch: bool = False
    world_size: int = 1
    on_reduced: Callable[[MicroBatchReduction], None] = lambda reduction: None
    agreed: bool = True
    """Whether all ranks can retry together (DDP, one process, or FSDP2 with the flag checks installed)."""
    max_over_ranks: Callable[[float], float] = lambda value: value
    """The largest of every rank's value (a collective; the value itself in one process)."""

    def smaller(self, step: StepBatches, error: BaseException) -> StepBatches:
        """`step` in smaller micro-batches, or the CudaOOM failure when there is no smaller."""
        where = f"step {step.number}" if step.number else "a training step"
        if not self.auto_batch:
            raise OutOfMemory(
                f"Out of memory in {where}: {error}",
                reason="OutOfMemory",
                field="hyperparameters.autoBatchOnOOM",
                hint=f"Set hyperparameters.autoBatchOnOOM to true to retry with smaller micro-batches. {OOM_HINT}",
            ) from error
        if self.world_size > 1 and not self.agreed:
            raise OutOfMemory(
                f"Out of memory in {where} on one of {self.world_size} processes: {error}. "
                "Under FSDP a forward pass is a sequence of collectives, so smaller micro-batches are retried only "
                "with strategy ddp or a single process.",
                reason="OutOfMemory",
                hint=OOM_HINT,
            ) from error
        one_each = self._everywhere(step.one_example_per_micro_batch)
        if step.reduce_budget is None or one_each or step.token_budget <= 1:
            raise OutOfMemory(
                f"Out of memory in {where} with the smallest micro-batches it can form"
                f"{' (one example each)' if one_each else ''}: {error}",
                reason="OutOfMemoryAtOneExample",
                hint=OOM_HINT,
            ) from error
        largest = self.max_over_ranks(_largest(step))
        budget = step.token_budget
        smaller = step
        # Halve until the largest micro-batch (over every rank) really shrinks: a retry at the same
        # size would fail again. Every rank decides on the same agreed values, so all stop together.
        while budget > 1 and not one_each:
            budget //= 2
            smaller = step.reduce_budget(budget)
            one_each = self._everywhere(smaller.one_example_per_micro_batch)
            if self.max_over_ranks(_largest(smaller)) < largest:
                break
        self.on_reduced(
            MicroBatchReduction(
                step=step.number,
                token_budget=budget,
                micro_batches=len(smaller.micro_batches),
                one_example_each=smaller.one_example_per_micro_batch,
            )
        )
        return smaller

    def _everywhere(self, flag: bool) -> bool:
        """Whether `flag` holds on every rank (one all-reduce under several processes)."""
        return self.max_over_ranks(0.0 if flag else 1.0) == 0.0


def _largest(step: StepBatches) -> float:
    """Tokens (padding included) of this rank's largest micro-batch of `step`."""
    return float(max((batch.input_ids.numel() for batch in step.micro_batches), default=0))


_POLICIES: weakref.WeakKeyDictionary[nn.Module, OomPolicy] = weakref.WeakKeyDictionary()


def attach_oom_policy(model: nn.Module, policy: OomPolicy) -> None:
    """Give `model`'s training steps this policy (Initialization does, from the job's hyperparameters)."""
    _POLICIES[model] = policy


def oom_policy_for(model: nn.Module) -> OomPolicy:
    """The policy attached to `model`; without one, an OOM fails the step."""
    return _POLICIES.get(model, OomPolicy())
