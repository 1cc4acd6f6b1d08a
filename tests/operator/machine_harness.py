"""Drive the pure state machine the way the kopf shell does: keep the status, feed observations, record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubetune_operator.api.conditions import EventNote
from kubetune_operator.api.resources import BaseModelTemplate
from kubetune_operator.api.status import Condition, ConditionType, FineTuneJobStatus
from kubetune_operator.lifecycle.actions import Action, CreateAttempt, RequeueAfter
from kubetune_operator.lifecycle.step import reconcile_step
from kubetune_operator.lifecycle.transitions import JobFacts, Step
from kubetune_operator.observe.observation import Observation, RunObservation, RunState
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import (
    JobError,
    ModelFacts,
    Outcome,
    OutputSummary,
    Progress,
    Result,
    Stage,
    StageRecord,
    StageState,
    WarningNote,
)

from .core_builders import CATALOG, JOB, SETTINGS, T0

FACTS = ModelFacts(
    model_type="llama",
    architectures=["LlamaForCausalLM"],
    parameters=6_738_415_616,
    max_positions=4096,
    revision_sha="08751db2aca9bf2f7f80d2e516117a53d7450235",
)
PASSED = RunObservation(state=RunState.SUCCEEDED, result=Result(outcome=Outcome.SUCCEEDED, model=FACTS))
BASE_SPEC: dict[str, Any] = {
    "model": "togethercomputer/llama-2-7b-chat",
    "trainingFile": "s3://data/train.jsonl",
    "checkpoint": {"uri": "s3://ckpt/support-bot"},
}


class Machine:
    """One FineTuneJob's status, advanced step by step; every Event and action is kept."""

    def __init__(
        self,
        *,
        templates: tuple[BaseModelTemplate, ...] = CATALOG,
        settings: OperatorSettings = SETTINGS,
        **spec_fields: Any,
    ) -> None:
        # A field given as None is left out of the spec (e.g. checkpoint=None: no checkpoint location).
        self.raw_spec: dict[str, Any] = {k: v for k, v in {**BASE_SPEC, **spec_fields}.items() if v is not None}
        self.templates = templates
        self.settings = settings
        self.generation = 1
        self.status = FineTuneJobStatus()
        self.events: list[EventNote] = []
        self.actions: list[Action] = []
        self.spent_gpu_hours: float | None = None
        """What the namespace's other jobs have spent (the shell counts it where a GPU-hour budget applies)."""

    def tick(self, seen: Observation | None = None, *, at: float = 0.0) -> Step:
        """Reconcile `at` seconds after T0 with `seen` (default: nothing exists)."""
        step, _ = reconcile_step(
            job=JobFacts(name=JOB.name, namespace=JOB.namespace, uid=JOB.uid, generation=self.generation),
            raw_spec=self.raw_spec,
            status=self.status,
            templates=self.templates,
            observation=seen or Observation(),
            now=T0 + timedelta(seconds=at),
            settings=self.settings,
            spent_gpu_hours=self.spent_gpu_hours,
        )
        # Stored and read back as the shell does: times on the wire are whole seconds.
        self.status = FineTuneJobStatus.parse(step.status.to_wire())
        self.events += step.events
        self.actions += step.actions
        return step

    def edit_spec(self, **fields: Any) -> None:
        self.raw_spec = {**self.raw_spec, **fields}
        self.generation += 1

    def trainer_reports(self, stage: Stage, *, done: tuple[Stage, ...] = (), progress: Progress | None = None) -> None:
        """What rank 0 patches: stage, stages and progress (the operator owns the rest)."""
        records = [StageRecord(name=s, state=StageState.SUCCEEDED, message=f"{s} done") for s in done]
        records.append(StageRecord(name=stage, state=StageState.RUNNING))
        self.status = self.status.model_copy(update={"stage": stage, "stages": records, "progress": progress})

    def condition(self, kind: ConditionType) -> Condition:
        return next(c for c in self.status.conditions if c.type == kind)

    def start_running(self, *, at: float = 0.0) -> None:
        """New job -> preflight passes -> attempt 1 runs."""
        self.tick(at=at)
        self.tick(Observation(preflight=PASSED), at=at)
        self.tick(attempt_seen(1, RunState.RUNNING), at=at)


def attempt_seen(
    attempt: int,
    state: RunState,
    *,
    error: JobError | None = None,
    result: Result | None = None,
    message: str = "",
    pod_seconds: float = 0.0,
    live_pods: int = 0,
) -> Observation:
    return Observation(
        preflight=PASSED,
        attempt=attempt,
        trainer=RunObservation(
            state=state, error=error, result=result, message=message, pod_seconds=pod_seconds, live_pods=live_pods
        ),
    )


def succeeded_result(*, warnings: list[WarningNote] | None = None) -> Result:
    return Result(
        outcome=Outcome.SUCCEEDED,
        output=OutputSummary(uri="s3://models/support-bot", name="Llama-2-7b-chat-hf-support-bot", files=5, bytes=10),
        warnings=warnings or [],
        checkpoint_step=400,
    )


def creates(step: Step) -> list[CreateAttempt]:
    return [a for a in step.actions if isinstance(a, CreateAttempt)]


def requeue(step: Step) -> float | None:
    return next((a.seconds for a in step.actions if isinstance(a, RequeueAfter)), None)


def reasons(events: list[EventNote]) -> list[str]:
    return [e.reason for e in events]
