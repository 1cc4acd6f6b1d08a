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

Several processes never retry: the rank that ran out would redo micro-batches its peers already
synchronised, and they would wait for it in a collective forever. There the OOM fails the run at
once (torchrun then stops the other ranks), with a hint on what to change.
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
        if self.world_size > 1:
            raise OutOfMemory(
                f"Out of memory in {where} on one of {self.world_size} processes: {error}. "
                "Smaller micro-batches are retried only in single-process runs.",
                reason="OutOfMemory",
                hint=OOM_HINT,
            ) from error
        if step.reduce_budget is None or step.one_example_per_micro_batch or step.token_budget <= 1:
            raise OutOfMemory(
                f"Out of memory in {where} with one example per micro-batch: {error}",
                reason="OutOfMemoryAtOneExample",
                hint=OOM_HINT,
            ) from error
        largest = max(batch.input_ids.numel() for batch in step.micro_batches)
        budget = step.token_budget
        smaller = step
        # Halve until the largest micro-batch really shrinks: a retry at the same size would fail again.
        while budget > 1 and not smaller.one_example_per_micro_batch:
            budget //= 2
            smaller = step.reduce_budget(budget)
            if max(batch.input_ids.numel() for batch in smaller.micro_batches) < largest:
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


_POLICIES: weakref.WeakKeyDictionary[nn.Module, OomPolicy] = weakref.WeakKeyDictionary()


def attach_oom_policy(model: nn.Module, policy: OomPolicy) -> None:
    """Give `model`'s training steps this policy (Initialization does, from the job's hyperparameters)."""
    _POLICIES[model] = policy


def oom_policy_for(model: nn.Module) -> OomPolicy:
    """The policy attached to `model`; without one, an OOM fails the step."""
    return _POLICIES.get(model, OomPolicy())
