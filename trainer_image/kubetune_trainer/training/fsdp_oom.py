"""Out-of-memory agreement under FSDP2: no rank enters an FSDP collective its peers have abandoned.

Under FSDP2 a forward pass is a sequence of collectives: every sharded unit (each decoder layer,
then the root with the embeddings, the final norm and the head) all-gathers its weights as its
forward starts, and every rank runs the units in the same order. A rank that runs out of memory
in a unit's computation stops there; its peers go on to the next unit's all-gather and would wait
in it for ever (or, had the rank then entered some other collective, pair two different
collectives). So when `autoBatchOnOOM` is on, this agreement puts one small all-reduce of a "ran
out" flag in front of every unit's all-gather (a forward pre-hook that runs before FSDP's own),
and one after each micro-batch's forward, before its backward:

    per micro-batch:  check, gather root | check, gather layer 0, layer 0 | ... | root's head, loss | check | backward

A rank that runs out of memory anywhere in the computation between two checks catches the error,
joins the next check with its flag raised (exactly one check, the one its peers reach next), and
every rank leaves the forward pass from that same check: none is left in an all-gather. Then the
step is planned again at a smaller micro-batch (`training.oom`, one agreed halving for all) and
FSDP's per-iteration state is reset (`FSDPModule.reset_iter_state`) before the retry.

What this does not recover, failing the run at once as CudaOOM instead (the process exits and
torchrun stops its peers, so nothing hangs):
- an OOM inside FSDP's own all-gather of a unit (allocating the gathered weights): the peers are
  already inside that collective;
- an OOM in a backward pass: under FSDP the backward re-gathers each unit's weights and, on the
  step's last micro-batch, reduce-scatters the gradients, so a rank that stops mid-backward has
  peers inside those collectives. (DDP recovers an OOM in any backward but the last one.)

Cost: one all-reduce per unit per micro-batch forward, and one at its end. An out-of-memory error
is raised on the CPU thread when an allocation fails, so the flags are CPU tensors all-reduced over
a gloo group (`cpu_side_group`; on CPU runs the default group is gloo already): under NCCL they
sync the ranks' CPU threads, not their GPU streams, and the CPU keeps queuing kernels ahead of its
GPU; each check costs a gloo round trip on the CPU's timeline. The checks are installed only when
`autoBatchOnOOM` is on, the strategy is fsdp and there is more than one process.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule

from ..classify import OOM_HINT
from ..errors import OutOfMemory
from .distributed import cpu_all_reduce_sum, cpu_side_group


class FsdpOomAgreement:
    """The flag checks in front of every FSDP unit's all-gather, armed only in a training step's forward passes."""

    def __init__(self, *, group: Any = None) -> None:
        self._group = group
        """The gloo group the flags go over (None: the default group, gloo itself)."""
        self._armed = False
        self.agreed = False
        """Whether this forward pass already ended in a check that said some rank ran out."""
        self.gathering = False
        """Whether FSDP is gathering a unit's weights (between the check and the unit's computation)."""

    def install(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, FSDPModule):
                # prepend: before FSDP's own pre-forward (its all-gather); appended: after it.
                module.register_forward_pre_hook(self._before_gather, prepend=True)
                module.register_forward_pre_hook(self._after_gather)

    @contextlib.contextmanager
    def forward_pass(self) -> Iterator[None]:
        """Arm the checks for one micro-batch's forward (a backward's recomputed forwards stay unchecked)."""
        self._armed, self.agreed, self.gathering = True, False, False
        try:
            yield
        finally:
            self._armed = False

    def agree(self, ran_out: str | None) -> None:
        """One all-reduce of this rank's flag; raises OutOfMemoryError on every rank when any ran out."""
        flags = cpu_all_reduce_sum(torch.tensor([0.0 if ran_out is None else 1.0]), group=self._group)
        if ran_out is None and flags[0] > 0:
            ran_out = f"{int(flags[0])} other training process(es) ran out of memory"
        if ran_out is not None:
            self.agreed = True
            raise torch.OutOfMemoryError(ran_out)

    def _before_gather(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._armed:
            self.agree(None)
            self.gathering = True

    def _after_gather(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.gathering = False


def unrecoverable(where: str, *, world_size: int, error: BaseException) -> OutOfMemory:
    """The CudaOOM failure of an OOM this agreement cannot recover (see the module docstring)."""
    return OutOfMemory(
        f"Out of memory {where} on one of {world_size} processes under FSDP: {error}. Its peers are inside an FSDP "
        "collective it will not join, so the step cannot be retried in smaller micro-batches.",
        reason="OutOfMemory",
        hint=OOM_HINT,
    )


_AGREEMENTS: weakref.WeakKeyDictionary[nn.Module, FsdpOomAgreement] = weakref.WeakKeyDictionary()


def install_fsdp_oom_agreement(model: nn.Module) -> FsdpOomAgreement | None:
    """Install the checks on a model sharded with FSDP2 (None for any other model). Every rank calls it."""
    if not isinstance(model, FSDPModule):
        return None
    agreement = FsdpOomAgreement(group=cpu_side_group())
    agreement.install(model)
    _AGREEMENTS[model] = agreement
    return agreement


def fsdp_oom_agreement_for(model: nn.Module) -> FsdpOomAgreement | None:
    """The agreement installed on `model`; None: an OOM under FSDP fails at once."""
    return _AGREEMENTS.get(model)
