"""The step watchdog's decision: no step within max(10 x median step time, floor) is a stall.

Driven as the pipeline and the loop drive it (stage transitions, progress reports) with an
injected monotonic clock, so every boundary is exact: only Training counts, the first step is
bounded by the floor, evaluations restart the clock, the median adapts the limit, and the
Result is Internal / Stalled / retryable with the Internal exit code. Then the thread and the
ending itself: the watchdog thread fires on its own, and `end_process` writes the termination
message, reports Training failed and the Result, and exits with code 1.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from kubetune_trainer.contract import (
    ErrorClass,
    Outcome,
    Progress,
    Result,
    RuntimeSettings,
    Stage,
    StageRecord,
    StageState,
)
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.watchdog import StepWatchdog, end_process, should_fire, stall_limit

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
FLOOR = 60.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _record(stage: Stage, state: StageState) -> StageRecord:
    return StageRecord(name=stage, state=state, start_time=T0)


def _start(watchdog: StepWatchdog, stage: Stage) -> None:
    before = [_record(s, StageState.SUCCEEDED) for s in list(Stage)[: list(Stage).index(stage)]]
    watchdog.stage_changed(stage, [*before, _record(stage, StageState.RUNNING)])


def _end_training(watchdog: StepWatchdog) -> None:
    done = [_record(s, StageState.SUCCEEDED) for s in list(Stage)[:3]]
    watchdog.stage_changed(Stage.TRAINING, done)


def _watchdog(clock: FakeMonotonic, stalls: list[Result]) -> StepWatchdog:
    return StepWatchdog(floor_seconds=FLOOR, on_stall=stalls.append, clock=lambda: T0, monotonic=clock)


def test_the_limit_is_ten_medians_or_the_floor() -> None:
    assert stall_limit([], floor_seconds=FLOOR) == FLOOR
    assert stall_limit([1.0, 2.0, 100.0], floor_seconds=FLOOR) == FLOOR  # 10 x 2 s is under the floor
    assert stall_limit([9.0, 10.0, 11.0, 500.0], floor_seconds=FLOOR) == 105.0  # the median ignores one outlier
    assert not should_fire([10.0, 10.0], idle_seconds=100.0, floor_seconds=FLOOR)
    assert should_fire([10.0, 10.0], idle_seconds=100.1, floor_seconds=FLOOR)
    assert not should_fire([], idle_seconds=FLOOR, floor_seconds=FLOOR)
    assert should_fire([], idle_seconds=FLOOR + 0.1, floor_seconds=FLOOR)


def test_only_training_counts_and_the_first_step_is_bounded_by_the_floor() -> None:
    clock, stalls = FakeMonotonic(), list[Result]()
    watchdog = _watchdog(clock, stalls)

    _start(watchdog, Stage.DATA_DOWNLOAD)
    clock.advance(10 * FLOOR)  # a long download is not a stalled step
    assert watchdog.check() is None

    _start(watchdog, Stage.TRAINING)
    clock.advance(FLOOR - 1)  # optimizer set-up and the evaluation before training
    watchdog.progress(Progress(step=0, total_steps=10, eval_loss=5.0))
    clock.advance(FLOOR)  # the first step, exactly at the floor: not yet
    assert watchdog.check() is None
    clock.advance(0.5)
    stalled = watchdog.check()

    assert stalled is not None
    assert stalled.error is not None
    assert (stalled.outcome, stalled.exit_code) == (Outcome.FAILED, 1)
    assert (stalled.error.error_class, stalled.error.reason, stalled.error.retryable, stalled.error.stage) == (
        ErrorClass.INTERNAL,
        "Stalled",
        True,
        Stage.TRAINING,
    )
    assert "no training step completed for 60s (limit 60s" in stalled.error.message
    assert "after step 0" in stalled.error.message
    assert stalled.error.hint is not None
    assert "stepWatchdogFloorSeconds" in stalled.error.hint


def test_after_steps_the_limit_follows_the_median_step_time() -> None:
    clock, stalls = FakeMonotonic(), list[Result]()
    watchdog = _watchdog(clock, stalls)
    _start(watchdog, Stage.TRAINING)
    watchdog.progress(Progress(step=0))
    for step in range(1, 6):
        clock.advance(30.0)  # 30 s steps: the limit becomes 300 s
        watchdog.progress(Progress(step=step))

    clock.advance(299.0)
    assert watchdog.check() is None
    clock.advance(2.0)
    stalled = watchdog.check()

    assert stalled is not None
    assert stalled.error is not None
    assert "no training step completed for 301s (limit 300s" in stalled.error.message
    assert "after step 5" in stalled.error.message


def test_an_evaluation_report_restarts_the_clock_and_a_resumed_run_starts_fresh() -> None:
    clock, stalls = FakeMonotonic(), list[Result]()
    watchdog = _watchdog(clock, stalls)
    _start(watchdog, Stage.TRAINING)
    watchdog.progress(Progress(step=40, total_steps=80))  # resumed at step 40: not 40 fast steps
    clock.advance(5.0)
    watchdog.progress(Progress(step=41))
    clock.advance(50.0)  # an evaluation after step 41
    watchdog.progress(Progress(step=41, eval_loss=2.0))
    clock.advance(FLOOR)  # limit: max(10 x 5 s, 60 s) = 60 s from the evaluation's end
    assert watchdog.check() is None
    clock.advance(1.0)
    assert watchdog.check() is not None


def test_the_watchdog_disarms_when_training_ends() -> None:
    clock, stalls = FakeMonotonic(), list[Result]()
    watchdog = _watchdog(clock, stalls)
    _start(watchdog, Stage.TRAINING)
    watchdog.progress(Progress(step=0))
    clock.advance(1.0)
    watchdog.progress(Progress(step=1))
    _end_training(watchdog)
    _start(watchdog, Stage.SAVING)

    clock.advance(100 * FLOOR)  # a long save or upload is not a stalled step
    assert watchdog.check() is None


def test_the_thread_fires_once_by_itself() -> None:
    """The thread polls on its own; the clock it reads is fake, so a loaded machine cannot make it early or late."""
    clock = FakeMonotonic()
    fired: list[Result] = []
    done = threading.Event()

    def on_stall(result: Result) -> None:
        fired.append(result)
        done.set()

    watchdog = StepWatchdog(
        floor_seconds=FLOOR, on_stall=on_stall, clock=lambda: T0, monotonic=clock, poll_seconds=0.01
    )
    watchdog.start()
    try:
        _start(watchdog, Stage.TRAINING)
        watchdog.progress(Progress(step=0))
        clock.advance(FLOOR)
        assert not done.wait(timeout=0.2)  # about 20 polls at the limit itself: not yet a stall
        clock.advance(1)
        assert done.wait(timeout=60)
        clock.advance(10 * FLOOR)
        assert not threading.Event().wait(timeout=0.2)  # about 20 more polls, long stalled: it fired once
    finally:
        watchdog.stop()

    assert len(fired) == 1
    assert fired[0].error is not None
    assert fired[0].error.reason == "Stalled"
    assert "no training step completed for 61s (limit 60s" in fired[0].error.message


def test_a_sub_ten_second_limit_is_written_in_tenths() -> None:
    clock, stalls = FakeMonotonic(), list[Result]()
    watchdog = StepWatchdog(floor_seconds=0.5, on_stall=stalls.append, clock=lambda: T0, monotonic=clock)
    _start(watchdog, Stage.TRAINING)
    watchdog.progress(Progress(step=0))
    clock.advance(0.75)
    stalled = watchdog.check()
    assert stalled is not None
    assert stalled.error is not None
    assert "no training step completed for 0.8s (limit 0.5s: " in stalled.error.message


def test_end_process_writes_the_result_reports_it_and_exits_with_the_internal_code(tmp_path: Path) -> None:
    clock, stalls = FakeMonotonic(), list[Result]()
    watchdog = _watchdog(clock, stalls)
    _start(watchdog, Stage.TRAINING)
    watchdog.progress(Progress(step=0))
    clock.advance(FLOOR + 1)
    stalled = watchdog.check()
    assert stalled is not None
    reporter, codes = RecordingReporter(), list[int]()
    log_path = tmp_path / "termination-log"

    end_process(stalled, watchdog=watchdog, reporter=reporter, termination_log=log_path, exit_process=codes.append)

    assert codes == [1]
    assert Result.from_termination_message(log_path.read_text(encoding="utf-8")) == stalled
    ((stage, records),) = reporter.transitions
    assert stage is Stage.TRAINING
    assert [(r.name, r.state) for r in records][-1] == (Stage.TRAINING, StageState.FAILED)
    assert records[-1].message is not None
    assert records[-1].message.startswith("no training step completed")
    assert reporter.results == [stalled]


@pytest.mark.parametrize("floor", [0.0, -1.0])
def test_the_floor_must_be_positive(floor: float) -> None:
    assert RuntimeSettings().step_watchdog_floor_seconds == 900.0
    with pytest.raises(ValidationError, match=r"step_watchdog_floor_seconds|stepWatchdogFloorSeconds"):
        RuntimeSettings(step_watchdog_floor_seconds=floor)
