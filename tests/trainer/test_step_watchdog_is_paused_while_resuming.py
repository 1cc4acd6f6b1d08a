"""Loading the checkpoint a run resumes from is not watched: a large checkpoint never looks like a stall.

Before the first step of a resumed run, rank 0 fetches the checkpoint (from an object store) and
hashes every file against its marker: minutes for a large model's weights and optimizer, longer
than the watchdog's floor. A watchdog firing there would fail every retry at the same point.

A real run writes checkpoints at steps 8 and 16, its step times measured; the watchdog's floor is
4x its slowest step (steps of the retry stay far under it, on a loaded machine too). Step 8's
checkpoint is given an extra sparse file (no disk space), listed in its marker, sized from the
measured sha256 rate so that verifying it takes about 4x the floor. The run resumed from
`tiny:8` with the step watchdog running its thread: no stall, the run finishes steps 9-16, and
the unwatched stretch before its first step was longer than the floor (so the test proves
something on a fast machine too).
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import Outcome, Progress, Result, Stage, StageRecord, StageState, TrainerConfig
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import FanOutReporter, RecordingReporter, Reporter
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint import COMPLETE_FILE, CompleteMarker, checkpoint_dir
from kubetune_trainer.watchdog import StepWatchdog

from .preemption_runs import resumable_job

BLOCK = bytes(1 << 24)


class StepTimes:
    """A reporter noting, in monotonic seconds, when Training started and when each progress report came."""

    def __init__(self) -> None:
        self.training_started: float | None = None
        self.reports: list[float] = []

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        if stage is Stage.TRAINING and stages[-1].state is StageState.RUNNING:
            self.training_started = time.monotonic()

    def progress(self, progress: Progress) -> None:
        self.reports.append(time.monotonic())

    def note(self, message: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass

    def slowest_gap(self) -> float:
        return max(later - earlier for earlier, later in itertools.pairwise(self.reports))

    def unwatched_start(self) -> float:
        """From Training's start to the first report: where the checkpoint is fetched and verified."""
        assert self.training_started is not None
        return self.reports[0] - self.training_started


def _sha256_bytes_per_second() -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    for _ in range(4):
        digest.update(BLOCK)
    return 4 * len(BLOCK) / (time.perf_counter() - started)


def _enlarge(checkpoint: Path, *, size: int) -> None:
    """A sparse file of `size` bytes in the checkpoint, its sha256 in the marker: verification reads all of it."""
    padding = checkpoint / "padding.bin"
    with padding.open("wb") as handle:
        handle.truncate(size)
    digest = hashlib.sha256()
    for _ in range(size // len(BLOCK)):
        digest.update(BLOCK)
    marker = CompleteMarker.model_validate_json((checkpoint / COMPLETE_FILE).read_text(encoding="utf-8"))
    hashes = {**marker.sha256, padding.name: digest.hexdigest()}
    (checkpoint / COMPLETE_FILE).write_text(marker.model_copy(update={"sha256": hashes}).model_dump_json())


def _run(config: TrainerConfig, *, offline_env: dict[str, str], reporters: list[Reporter], **extra: Any) -> Result:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_pipeline(
            config,
            environ=offline_env,
            clock=lambda: datetime.now(UTC),
            reporter=FanOutReporter([RecordingReporter(), *reporters]),
            dist=DistInfo(),
            **extra,
        )
    finally:
        torch.set_num_threads(threads)


def test_resuming_from_a_slow_to_verify_checkpoint_is_not_a_stall(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=checkpoints)
    first_times = StepTimes()
    written = _run(first, offline_env=offline_env, reporters=[first_times])
    assert written.outcome is Outcome.SUCCEEDED
    floor = max(4 * first_times.slowest_gap(), 0.5)
    size = int(4 * floor * _sha256_bytes_per_second()) // len(BLOCK) * len(BLOCK) + len(BLOCK)
    _enlarge(checkpoint_dir(checkpoints / "tiny" / "uid-1234", 8), size=size)
    # The first run saved its model beside its checkpoints; a retry would upload that and train nothing.
    # This one must resume training (as after a stop before Saving), so the kept model goes.
    shutil.rmtree(checkpoints / "tiny" / "uid-1234" / "saved")

    stalls: list[Result] = []
    watchdog = StepWatchdog(floor_seconds=floor, on_stall=stalls.append, clock=lambda: datetime.now(UTC))
    watchdog.start()
    config = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "retry", checkpoints=checkpoints, resume_from="tiny:8"
    )
    retry_times = StepTimes()
    try:
        result = _run(config, offline_env=offline_env, reporters=[watchdog, retry_times], step_watchdog=watchdog)
    finally:
        watchdog.stop()

    assert [stall.error.message for stall in stalls if stall.error is not None] == []
    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert result.resumed_from_step == 8
    assert retry_times.unwatched_start() > floor, (
        "verifying the checkpoint took less than the floor: nothing was proven"
    )
