"""The run context: what one trainer run knows, handed from stage to stage.

Each stage is `def run(ctx: RunContext) -> None`: it reads what earlier stages left in the
context and fills the slots later stages need. The world (environment, clock, reporter) comes
in through the context too, so no stage reads `os.environ` or the wall clock on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import (
    MemoryPlanReport,
    ModelFacts,
    OutputSummary,
    TrainerConfig,
    TrainingPerformance,
    WarningNote,
)

if TYPE_CHECKING:
    from .adapter import AdapterLineage
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
class RunContext:
    """One trainer run: its inputs, the world it runs in, and the artifacts stages hand on.

    Slots start empty (None or empty lists) and are filled by the stage named in their comment.
    Types from the ML stack are `Any` here so the context imports no torch.
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

    warnings: list[WarningNote] = field(default_factory=list)

    # DataDownload: the model snapshot actually trained (merged base for adapter repos).
    model_path: Path | None = None
    revision_sha: str | None = None
    model_facts: ModelFacts | None = None
    # DataDownload: set when fromHfModel is a LoRA adapter repo, merged into its base at `model_path`.
    adapter_lineage: AdapterLineage | None = None
    # DataDownload: the data files as fetched, and their sha256 (for the model card).
    training_file_path: Path | None = None
    validation_file_path: Path | None = None
    training_file_sha256: str | None = None
    validation_file_sha256: str | None = None
    default_chat_template: bool = False
    # DataDownload: tokenizer and tokenized examples (data engineer's TokenizedExample lists).
    tokenizer: Any = None
    train_examples: list[Any] = field(default_factory=list)
    validation_examples: list[Any] = field(default_factory=list)
    max_seq_length: int | None = None
    training_tokens: int | None = None
    """Tokens of the tokenized training examples, one epoch: the DataDownload record reports it."""

    # Initialization: the model (wrapped for DDP/FSDP/LoRA) and anything the loop needs.
    model: Any = None
    training_state: Any = None

    # Training: metrics as run (loss, eval loss before/after, steps, tokens/s).
    metrics: dict[str, float] = field(default_factory=dict)
    total_steps: int | None = None
    checkpoint_step: int | None = None
    """Step of this job's newest complete checkpoint (written, or resumed from)."""
    resumed_from_step: int | None = None
    memory_plan: MemoryPlanReport | None = None
    """Step of the checkpoint training started from (this job's own, or fromCheckpoint's)."""
    performance: TrainingPerformance | None = None
    """Initialization: the kernels chosen; Training: with the throughput, peak memory and MFU reached."""

    # Saving: the directory holding everything to upload, and what is in it.
    saved_dir: Path | None = None
    output_name: str | None = None

    # Upload: what reached the destination.
    output: OutputSummary | None = None

    def warn(self, reason: str, message: str) -> None:
        """Record something a user should know that does not stop the run."""
        note = WarningNote(reason=reason, message=message)
        if note not in self.warnings:
            self.warnings.append(note)
