"""Where a run's stage transitions and progress go: the `Reporter` protocol and its plain sinks.

The pipeline announces every stage transition; the training loop hands over a `Progress` after
every optimizer step and after every evaluation. Each reporter decides for itself how often to
pass that on (the Kubernetes reporter rate-limits, the terminal redraws its bar), so the loop
never needs to know who is listening.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from .contract import Progress, Result, Stage, StageRecord, StageState, TrainingPerformance


class Reporter(Protocol):
    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        """A stage started or ended; `stages` is every stage of this attempt so far, in order."""

    def progress(self, progress: Progress) -> None:
        """Training progress after an optimizer step or an evaluation."""

    def note(self, message: str) -> None:
        """A line a person watching the run should read (a warning, where the output went)."""

    def finished(self, result: Result) -> None:
        """The run ended; flush anything pending."""


@dataclass
class RecordingReporter:
    """Keeps everything it is told, for tests to assert on."""

    transitions: list[tuple[Stage, list[StageRecord]]] = field(default_factory=list)
    progresses: list[Progress] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        self.transitions.append((stage, list(stages)))

    def progress(self, progress: Progress) -> None:
        self.progresses.append(progress)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def finished(self, result: Result) -> None:
        self.results.append(result)


class NullReporter:
    """Reports nothing: ranks other than 0, and `report.kind: none`."""

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass


@dataclass
class FanOutReporter:
    """Passes everything to several reporters (terminal or Kubernetes, plus W&B and metrics)."""

    reporters: Sequence[Reporter]

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        for reporter in self.reporters:
            reporter.stage_changed(stage, stages)

    def progress(self, progress: Progress) -> None:
        for reporter in self.reporters:
            reporter.progress(progress)

    def note(self, message: str) -> None:
        for reporter in self.reporters:
            reporter.note(message)

    def finished(self, result: Result) -> None:
        for reporter in self.reporters:
            reporter.finished(result)


def describe_result(result: Result) -> list[str]:
    """What a person reads at the end of a run: the outcome, and for a failure class, reason, message, hint."""
    if result.error is None:
        lines = [f"{result.outcome.value}"]
        if result.output is not None:
            out = result.output
            lines[0] += f": {out.name} at {out.uri} ({out.files} files, {out.bytes:,} bytes)"
    else:
        error = result.error
        where = f" in {error.stage.value}" if error.stage else ""
        lines = [f"{result.outcome.value}{where}: {error.error_class.value} ({error.reason})", f"  {error.message}"]
        if error.hint:
            lines.append(f"  hint: {error.hint}")
    if result.performance is not None:
        lines.append(performance_line(result.performance))
    lines += [f"warning {w.reason}: {w.message}" for w in result.warnings]
    return lines


def performance_line(performance: TrainingPerformance) -> str:
    """`training: attention varlen, compiled, NVIDIA H200, 41,000 tok/s, MFU 30.1%, peak 40.2 GiB`"""
    parts = [f"training: attention {performance.attention.value}", "compiled" if performance.compiled else "eager"]
    parts.append(performance.device)
    if performance.tokens_per_second is not None:
        parts.append(f"{performance.tokens_per_second:,.0f} tok/s")
    if performance.mfu is not None:
        parts.append(f"MFU {performance.mfu:.1%}")
    if performance.peak_gpu_memory_bytes is not None:
        parts.append(f"peak {performance.peak_gpu_memory_bytes / 2**30:.1f} GiB")
    return ", ".join(parts)


BAR_WIDTH = 24


def progress_line(progress: Progress) -> str:
    """`[#######-----------------]  12/40  30%  loss 2.3456  eval 2.1000  lr 1.00e-04  1,234 tok/s  ETA 0:01:23`"""
    total = progress.total_steps or 0
    filled = min(BAR_WIDTH, BAR_WIDTH * progress.step // total) if total else 0
    parts = [f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]", f"{progress.step:>4}/{total or '?'}"]
    if total:
        parts.append(f"{min(100, 100 * progress.step // total):>3}%")
    if progress.loss is not None:
        parts.append(f"loss {progress.loss:.4f}")
    if progress.eval_loss is not None:
        parts.append(f"eval {progress.eval_loss:.4f}")
    if progress.preference is not None:
        preference = progress.preference
        parts.append(f"reward acc {preference.reward_accuracy:.2f} margin {preference.reward_margin:+.3f}")
    if progress.learning_rate is not None:
        parts.append(f"lr {progress.learning_rate:.2e}")
    if progress.tokens_per_second is not None:
        parts.append(f"{progress.tokens_per_second:,.0f} tok/s")
    if progress.mfu is not None:
        parts.append(f"MFU {progress.mfu:.1%}")
    if progress.peak_gpu_memory_bytes is not None:
        parts.append(f"peak {progress.peak_gpu_memory_bytes / 2**30:.1f} GiB")
    if progress.eta_seconds is not None:
        hours, rest = divmod(progress.eta_seconds, 3600)
        parts.append(f"ETA {hours}:{rest // 60:02d}:{rest % 60:02d}")
    return "  ".join(part for part in parts if part)


class TerminalReporter:
    """Stage transitions as lines and training as a progress bar, for `kubetune run --local`.

    On a terminal the bar redraws in place after every step; into a file or a pipe a bar line is
    written at most every `min_interval_seconds`, and always for the last step.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interactive: bool,
        min_interval_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interactive = interactive
        self._min_interval = min_interval_seconds
        self._monotonic = monotonic
        self._bar_shown = False
        self._last_line_at: float | None = None
        self._eval_loss: float | None = None

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        record = stages[-1]
        if record.state is StageState.RUNNING:
            self._line(f"==> {stage.value}")
            return
        took = ""
        if record.start_time and record.end_time:
            took = f" in {(record.end_time - record.start_time).total_seconds():.1f}s"
        self._line(f"    {stage.value} {record.state.value.lower()}{took}")

    def progress(self, progress: Progress) -> None:
        # The loop reports evaluations on their own; keep the last eval loss on the bar.
        if progress.eval_loss is not None:
            self._eval_loss = progress.eval_loss
        elif self._eval_loss is not None:
            progress = progress.model_copy(update={"eval_loss": self._eval_loss})
        text = progress_line(progress)
        if self._interactive:
            self._stream.write(f"\r\x1b[2K{text}")
            self._stream.flush()
            self._bar_shown = True
            return
        now = self._monotonic()
        last = progress.total_steps is not None and progress.step >= progress.total_steps
        if last or self._last_line_at is None or now - self._last_line_at >= self._min_interval:
            self._last_line_at = now
            self._line(text)

    def note(self, message: str) -> None:
        self._line(f"    {message}")

    def finished(self, result: Result) -> None:
        for text in describe_result(result):
            self._line(text)

    def _line(self, text: str) -> None:
        if self._bar_shown:
            self._stream.write("\n")
            self._bar_shown = False
        self._stream.write(text + "\n")
        self._stream.flush()
