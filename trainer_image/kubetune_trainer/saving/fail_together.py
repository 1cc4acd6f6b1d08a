"""Rank 0 writes the output; every rank learns at once when a write fails, and fails with it.

Under FSDP2 the ranks meet in a collective for every tensor they gather and scatter while saving.
If rank 0's write failed (a full disk, a volume gone read-only) and rank 0 simply raised, the
other ranks would wait in their next gather until the process group's timeout (30 minutes), each
holding its GPU, and only then fail, with a communication error instead of the real one. So each
of rank 0's writes runs inside `FailTogether.around()`, which ends in one small collective (an
all-gather of each rank's error, None on success): on a failure every rank raises at once, rank 0
its own exception and the others `WriterFailed`, which carries rank 0's error as the Result names
it (class, reason, hint, retryable; the message says it was rank 0's). Whichever rank's Result
reaches the pod's termination log first, the operator acts on the same error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from ..classify import classify
from ..contract import JobError, Stage
from ..errors import TrainerError


class WriterFailed(TrainerError):
    """Another rank's write failed: this rank stops with that rank's error."""

    def __init__(self, error: JobError, *, rank: int) -> None:
        super().__init__(
            f"rank {rank} failed while writing the output: {error.message}",
            reason=error.reason,
            hint=error.hint,
            retryable=error.retryable,
        )
        self.error = error

    def to_job_error(self, stage: Stage | None = None) -> JobError:
        return self.error.model_copy(update={"stage": stage, "message": self.message})


@dataclass(frozen=True)
class FailTogether:
    """Where the ranks meet after each write: `collective` under FSDP2, where every rank stays in the stage."""

    job_uid: str
    collective: bool

    @contextmanager
    def around(self) -> Iterator[None]:
        """Run the block (a write on rank 0, nothing elsewhere), then learn every rank's outcome; a collective
        when `collective`: every rank enters it the same number of times, in the same order."""
        if not (self.collective and dist.is_initialized()):
            yield
            return
        try:
            yield
        except Exception as failed:
            _outcomes(classify(failed, stage=None, job_uid=self.job_uid))
            raise
        for rank, error in enumerate(_outcomes(None)):
            if error is not None:
                raise WriterFailed(error, rank=rank)


ALONE = FailTogether(job_uid="", collective=False)
"""No other rank waits on this one's writes (one process; DDP, where the other ranks have left the stage)."""


def _outcomes(own: JobError | None) -> list[JobError | None]:
    """Every rank's error (None where it succeeded), in rank order: a collective."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, None if own is None else own.to_wire())
    return [None if error is None else JobError.parse(error) for error in gathered]
