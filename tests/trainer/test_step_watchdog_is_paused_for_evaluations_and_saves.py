"""The step watchdog never fires during an evaluation or a checkpoint save; its clock restarts after them.

An evaluation and a checkpoint save (with its copy to an object store) are not steps, and a large
model's save can outlast any floor: a watchdog firing there would fail every retry at the same
checkpoint. The loop runs them inside the watchdog's pause (`StepWatchdog.paused`).

- The watchdog (injected monotonic clock): paused, a stall of any length is not one; after the
  pause the clock restarts, and the pause is not counted in the next step's duration.
- The real loop on a tiny model: every evaluation (before training and at its step) and every
  checkpoint save happens inside the pause, and nothing else does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import torch
from transformers import AutoTokenizer

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import Progress, Result, Stage, StageRecord, StageState
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.loop import train
from kubetune_trainer.training.precision import plan_precision
from kubetune_trainer.training.schedule import build_scheduler
from kubetune_trainer.training.setup import load_model
from kubetune_trainer.training.steps import BatchingPlan, EpochSteps, validation_batches
from kubetune_trainer.watchdog import StepWatchdog

from .training_jobs import chat_lines, tokenized, trainer_config

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _training(watchdog: StepWatchdog) -> None:
    watchdog.stage_changed(Stage.TRAINING, [StageRecord(name=Stage.TRAINING, state=StageState.RUNNING, start_time=T0)])


def test_a_pause_of_any_length_is_not_a_stall_and_restarts_the_clock() -> None:
    clock = FakeMonotonic()
    stalls: list[Result] = []
    watchdog = StepWatchdog(floor_seconds=60, on_stall=stalls.append, clock=lambda: T0, monotonic=clock)
    _training(watchdog)
    for step in range(1, 4):  # steps of 1 s: the limit is the floor, 60 s
        clock.now += 1
        watchdog.progress(Progress(step=step, total_steps=10))

    with watchdog.paused():
        clock.now += 10_000  # a checkpoint copied to a slow object store
        assert watchdog.check() is None
    clock.now += 59
    assert watchdog.check() is None  # idle since the pause ended, not since step 3
    watchdog.progress(Progress(step=4, total_steps=10))
    clock.now += 61
    stalled = watchdog.check()

    assert stalled is not None
    assert stalled.error is not None
    assert stalled.error.reason == "Stalled"
    assert stalls == []  # check() decides; only the thread ends the run


def test_the_loop_evaluates_and_saves_only_inside_the_pause(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    examples = tokenized(tokenizer, chat_lines(8, seed=3))
    plan = BatchingPlan(examples_per_step=4, token_budget=256, packing=True, pad_token_id=0, seed=0)
    config = trainer_config(
        tiny_llama, work_dir=tmp_path, training_file=tmp_path / "unused.jsonl", batch_size=4, n_evals=1, n_checkpoints=2
    )
    torch.manual_seed(0)
    model = load_model(tiny_llama.snapshot_path, dtype=torch.float32)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scheduler = build_scheduler(
        optimizer, schedule=config.hyperparameters.lr_scheduler, total_steps=2, warmup_ratio=0.0
    )
    root = tmp_path / "checkpoints"
    reporter = RecordingReporter()
    pauses: list[tuple[int, int, int, int]] = []  # checkpoints and reports at entry, then at exit

    @contextlib.contextmanager
    def paused() -> Iterator[None]:
        entry = (len(list(root.glob("step-*"))), len(reporter.progresses))
        yield
        pauses.append((*entry, len(list(root.glob("step-*"))), len(reporter.progresses)))

    result = train(
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=lambda epoch: EpochSteps(examples, plan=plan, epoch=epoch),
        total_steps=2,
        validation=validation_batches(tokenized(tokenizer, chat_lines(4, seed=9)), plan=plan),
        hyperparameters=config.hyperparameters,
        precision=plan_precision(config.runtime.precision, device=torch.device("cpu")),
        device=torch.device("cpu"),
        dist_info=DistInfo(),
        reporter=reporter,
        clock=lambda: T0,
        checkpoint_root=root,
        lora=False,
        unwatched=paused,
    )

    assert [step for step, _ in result.eval_losses] == [0, 2]
    # Reports: the evaluation before training (1), step 1 (2), step 1 again carrying its checkpoint, sent
    # once the save is done (3), step 2 (4), step 2's evaluation (5).
    # Pauses: the evaluation before training; step 1's save; step 2's evaluation; step 2's save.
    assert pauses == [(0, 0, 0, 0), (0, 2, 1, 2), (1, 4, 1, 4), (1, 5, 2, 5)]
