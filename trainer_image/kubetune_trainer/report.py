"""Where a run's stage transitions and progress go: the `Reporter` protocol and its plain sinks.

The pipeline announces every stage transition; the training loop hands over a `Progress` after
every optimizer step and after every evaluation. Each reporter decides for itself how often to
pass that on (the Kubernetes reporter rate-limits, the terminal redraws its bar), so the loop
never needs to know who is listening.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .contract import Progress, Result, Stage, StageRecord


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
