"""hyperparameters.autoBatchOnOOM: on unless the job or its template turns it off; the job's value wins."""

from __future__ import annotations

from typing import Any

from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.render.trainer_config import build_trainer_config
from kubetune_trainer.contract import JobIdentity, ReportTarget, TrainerConfig

from .core_builders import CATALOG, resolved, spec, template, with_template_changes

IDENTITY = JobIdentity(namespace="ml", name="chat", uid="u")


def _rendered(job_spec: FineTuneJobSpec, *, template_hyperparameters: dict[str, Any] | None = None) -> TrainerConfig:
    templates = CATALOG
    if template_hyperparameters is not None:
        base = template("llama-2-7b-chat").spec.training.to_wire()
        templates = (
            with_template_changes("llama-2-7b-chat", training={**base, "hyperparameters": template_hyperparameters}),
        )
    config = build_trainer_config(
        resolved(job_spec, templates=templates), job=IDENTITY, report=ReportTarget(kind="none")
    )
    return TrainerConfig.from_json(config.to_json())


def test_it_is_on_when_nobody_says() -> None:
    assert _rendered(spec()).hyperparameters.auto_batch_on_oom is True


def test_the_job_turns_it_off_and_the_trainer_config_carries_it() -> None:
    config = _rendered(spec(hyperparameters={"autoBatchOnOOM": False}))
    assert config.hyperparameters.auto_batch_on_oom is False
    assert '"autoBatchOnOOM":false' in config.to_json().replace(" ", "")


def test_a_template_default_sits_under_the_jobs_value() -> None:
    off = {"autoBatchOnOOM": False}
    assert _rendered(spec(), template_hyperparameters=off).hyperparameters.auto_batch_on_oom is False
    job_says_on = spec(hyperparameters={"autoBatchOnOOM": True})
    assert _rendered(job_says_on, template_hyperparameters=off).hyperparameters.auto_batch_on_oom is True
