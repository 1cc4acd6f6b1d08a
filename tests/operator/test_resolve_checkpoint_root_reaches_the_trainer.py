"""The operator tells the trainer which location holds one checkpoint directory per job.

`runtime.checkpointRoot` is `spec.checkpoint.uri`, or `<defaultCheckpointUri>/<namespace>` when the
job names none (its own directory then being `<root>/<job>`, as before); absent without either.
The trainer then never guesses from the location's last segment.
"""

from __future__ import annotations

import json

from kubetune_operator.render import render_attempt
from kubetune_trainer.contract import TrainerConfig

from .core_builders import JOB, SETTINGS, resolved, spec


def _runtime_of(job_spec_fields: dict[str, object], *, default: str | None) -> tuple[str | None, str | None]:
    settings = SETTINGS.model_copy(update={"default_checkpoint_uri": default})
    objects = render_attempt(
        resolved(spec(**job_spec_fields), settings=settings), job=JOB, attempt=1, settings=settings
    )
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (text,) = config_map["data"].values()
    runtime = TrainerConfig.from_json(text).runtime
    return runtime.checkpoint_uri, runtime.checkpoint_root


def test_a_spec_location_is_the_root() -> None:
    assert _runtime_of({"checkpoint": {"uri": "s3://ckpt/runs/"}}, default="s3://default") == (
        "s3://ckpt/runs/",
        "s3://ckpt/runs",
    )


def test_the_default_location_is_scoped_to_the_namespace() -> None:
    assert _runtime_of({}, default="s3://default") == ("s3://default/ml/support-bot", "s3://default/ml")


def test_no_location_no_root() -> None:
    assert _runtime_of({}, default=None) == (None, None)


def test_the_config_map_holds_the_root_on_the_wire() -> None:
    settings = SETTINGS.model_copy(update={"default_checkpoint_uri": "pvc://ckpt/jobs"})
    objects = render_attempt(resolved(spec(), settings=settings), job=JOB, attempt=1, settings=settings)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (text,) = config_map["data"].values()
    assert json.loads(text)["runtime"]["checkpointRoot"] == "pvc://ckpt/jobs/ml"
