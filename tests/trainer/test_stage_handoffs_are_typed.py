"""Each stage's signature names exactly the hand-offs it takes and returns, and no hand-off hides an `Any`.

mypy (strict) proves the pipeline hands each stage only what earlier stages returned, but it
accepts a stage typed more loosely than `pipeline.Stages` declares (a parameter of type `object`)
and an explicit `Any` in a hand-off's field, either of which would let a stage read anything
again. This reads the annotations as Python resolves them.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

from kubetune_trainer import handoffs
from kubetune_trainer.context import RunContext, RunJournal
from kubetune_trainer.pipeline import STAGES, Stages
from kubetune_trainer.preemption import Preemption
from kubetune_trainer.report import Reporter
from kubetune_trainer.watchdog import StepWatchdog

# context.py names these under TYPE_CHECKING only (they sit above it in the layers).
CONTEXT_NAMES = {"Preemption": Preemption, "Reporter": Reporter, "StepWatchdog": StepWatchdog}


def _mentions_any(annotation: object) -> bool:
    return annotation is typing.Any or any(_mentions_any(arg) for arg in typing.get_args(annotation))


def test_every_stage_takes_and_returns_exactly_the_hand_offs_stages_declares() -> None:
    declared = typing.get_type_hints(Stages, localns=CONTEXT_NAMES)
    for field in dataclasses.fields(Stages):
        takes, returns = typing.get_args(declared[field.name])
        run = getattr(STAGES, field.name)
        hints = typing.get_type_hints(run, localns=CONTEXT_NAMES)
        required = [p.name for p in inspect.signature(run).parameters.values() if p.default is inspect.Parameter.empty]
        assert [hints[name] for name in required] == takes, field.name
        assert hints["return"] == returns, field.name
        assert not any(_mentions_any(hint) for hint in hints.values()), f"{field.name}: {hints}"
    # Every stage takes the run's context first, and nothing but the context and hand-offs.
    assert all(typing.get_args(declared[f.name])[0][0] is RunContext for f in dataclasses.fields(Stages))


def test_no_hand_off_and_nothing_the_context_carries_is_any() -> None:
    classes = [
        value
        for value in vars(handoffs).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == handoffs.__name__
    ]
    assert {cls.__name__ for cls in classes} >= {
        "DownloadResult",
        "InitializedRun",
        "TrainingOutcome",
        "SavedModel",
    }
    for cls in [*classes, RunContext, RunJournal]:
        assert dataclasses.fields(cls)
        for name, annotation in typing.get_type_hints(cls, localns=CONTEXT_NAMES).items():
            assert not _mentions_any(annotation), f"{cls.__name__}.{name}: {annotation}"
    assert all(cls.__dataclass_params__.frozen for cls in [*classes, RunContext])  # type: ignore[attr-defined]
