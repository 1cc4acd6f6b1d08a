"""The run context: the inputs and the world of one trainer run, and the journal its Result is built from.

Every stage takes the context first: the world (environment, clock, reporter) comes in through
it, so no stage reads `os.environ` or the wall clock on its own. What a stage produces for the
next ones is not here: each stage returns a typed hand-off (`handoffs.py`) that the pipeline
passes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .contract import (
    MemoryPlanReport,
    ModelFacts,
    OutputSummary,
    TrainerConfig,
    TrainingPerformance,
    WarningNote,
)

if TYPE_CHECKING:
    from .preemption import Preemption
    from .report import Reporter
    from .watchdog import StepWatchdog

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun world; a plain run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes outputs, uploads and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DistInfo:
        """Read RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them."""
        return cls(
            rank=int(environ.get("RANK", "0")),
            world_size=int(environ.get("WORLD_SIZE", "1")),
            local_rank=int(environ.get("LOCAL_RANK", "0")),
        )


@dataclass(frozen=True)
class WorkPaths:
    """Scratch directories under `runtime.work_dir`, one per purpose."""

    root: Path

    @property
    def data(self) -> Path:
        """Downloaded training and validation files."""
        return self.root / "data"

    @property
    def output(self) -> Path:
        """The saved model, before upload."""
        return self.root / "output"

    @property
    def checkpoints(self) -> Path:
        """Local checkpoints, when the job names no checkpoint location."""
        return self.root / "checkpoints"

    @property
    def merged_base(self) -> Path:
        """A LoRA adapter repo merged into its base model, the model really trained."""
        return self.root / "merged-base"


@dataclass
class RunJournal:
    """The run's Result as it stands, recorded by the stages as each fact becomes true.

    A stage that fails half-way leaves what it had recorded (the memory plan of a run that ran
    out of memory, the newest checkpoint of a preempted one), and SIGTERM's deadline reads it from
    another thread. Stages write here; none reads what another stage wrote: that travels in the
    typed hand-offs (`handoffs.py`). The fields are the Result's, optional as they are there: a run
    that fails early has none of them.
    """

    warnings: list[WarningNote] = field(default_factory=list)
    model: ModelFacts | None = None
    """DataDownload: what config.json says about the model trained."""
    performance: TrainingPerformance | None = None
    """Initialization: the kernels chosen; Training: with the throughput, peak memory and MFU reached."""
    memory_plan: MemoryPlanReport | None = None
    """Training: the micro-batch budget planned before the first step."""
    checkpoint_step: int | None = None
    """Training: step of this job's newest complete checkpoint (written, or resumed from)."""
    resumed_from_step: int | None = None
    """Training: step of the checkpoint training started from (this job's own, or fromCheckpoint's)."""
    output: OutputSummary | None = None
    """Upload: what reached the destination."""

    def warn(self, reason: str, message: str) -> None:
        """Record something a user should know that does not stop the run."""
        note = WarningNote(reason=reason, message=message)
        if note not in self.warnings:
            self.warnings.append(note)


@dataclass(frozen=True)
class RunContext:
    """One trainer run: its inputs and the world it runs in, the same for every stage.

    What a stage produces for the next ones is its return value (`handoffs.py`), never a slot
    here; what the Result reports is recorded in `journal`.
    """

    config: TrainerConfig
    environ: Mapping[str, str]
    clock: Clock
    reporter: Reporter
    dist: DistInfo = field(default_factory=DistInfo)
    paths: WorkPaths = field(default_factory=lambda: WorkPaths(Path("/work")))
    preemption: Preemption | None = None
    """SIGTERM's notice and budget (the process entry point installs it; None: signals are not handled)."""
    step_watchdog: StepWatchdog | None = None
    """Rank 0's step watchdog (the entry point starts it); Training pauses it for evaluations and saves."""
    journal: RunJournal = field(default_factory=RunJournal)

    def warn(self, reason: str, message: str) -> None:
        """Record something a user should know that does not stop the run."""
        self.journal.warn(reason, message)
