"""Loading the checkpoint a run resumes from is not watched: a large checkpoint never looks like a stall.

Before the first step of a resumed run, rank 0 fetches the checkpoint (from an object store) and
hashes every file against its marker: minutes for a large model's weights and optimizer, longer
than the watchdog's floor. A watchdog firing there would fail every retry at the same point.

A real run writes checkpoints at steps 8 and 16; step 8's is given an extra file of 3 GB
(sparse: no disk space), listed in its marker, so verifying it takes over a second. The run
resumed from `tiny:8` with a step watchdog of floor 0.5 s, running its thread: no stall, the
run finishes steps 9-16.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import Outcome, Result
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import FanOutReporter, RecordingReporter
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint import COMPLETE_FILE, CompleteMarker, checkpoint_dir
from kubetune_trainer.watchdog import StepWatchdog

from .preemption_runs import resumable_job, run_in_process

LARGE_FILE_BYTES = 3 << 30


def _enlarge(checkpoint: Path) -> None:
    """A sparse 3 GB file in the checkpoint, its sha256 in the marker: verification reads all of it."""
    padding = checkpoint / "padding.bin"
    with padding.open("wb") as handle:
        handle.truncate(LARGE_FILE_BYTES)
    digest = hashlib.sha256()
    block = bytes(1 << 24)
    for _ in range(LARGE_FILE_BYTES // len(block)):
        digest.update(block)
    marker = CompleteMarker.model_validate_json((checkpoint / COMPLETE_FILE).read_text(encoding="utf-8"))
    hashes = {**marker.sha256, padding.name: digest.hexdigest()}
    (checkpoint / COMPLETE_FILE).write_text(marker.model_copy(update={"sha256": hashes}).model_dump_json())


def test_resuming_from_a_slow_to_verify_checkpoint_is_not_a_stall(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first = resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=checkpoints)
    written, _ = run_in_process(first, offline_env=offline_env)
    assert written.outcome is Outcome.SUCCEEDED
    _enlarge(checkpoint_dir(checkpoints / "tiny", 8))

    stalls: list[Result] = []
    watchdog = StepWatchdog(floor_seconds=0.5, on_stall=stalls.append, clock=lambda: datetime.now(UTC))
    watchdog.start()
    config = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "retry", checkpoints=checkpoints, resume_from="tiny:8"
    )
    try:
        result = run_pipeline(
            config,
            environ=offline_env,
            clock=lambda: datetime.now(UTC),
            reporter=FanOutReporter([RecordingReporter(), watchdog]),
            dist=DistInfo(),
            step_watchdog=watchdog,
        )
    finally:
        watchdog.stop()

    assert [stall.error.message for stall in stalls if stall.error is not None] == []
    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert result.resumed_from_step == 8
