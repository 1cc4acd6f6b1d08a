"""The trainer's step watchdog floor is an operator setting, carried into every attempt's trainer config.

`KUBETUNE_STEP_WATCHDOG_FLOOR_SECONDS` on the operator becomes `runtime.stepWatchdogFloorSeconds`
in the ConfigMap the trainer reads; without it the trainer's default, 900 s, is written.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune_operator.render import render_attempt
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import TrainerConfig

from .core_builders import JOB, SETTINGS, resolved


def _config_map_data(settings: OperatorSettings) -> str:
    objects = render_attempt(resolved(), job=JOB, attempt=1, settings=settings)
    config_map: dict[str, Any] = next(o for o in objects if o["kind"] == "ConfigMap")
    data: str = config_map["data"]["config.json"]
    return data


def test_the_default_floor_is_900_seconds() -> None:
    data = _config_map_data(SETTINGS)

    assert json.loads(data)["runtime"]["stepWatchdogFloorSeconds"] == 900.0
    assert TrainerConfig.from_json(data).runtime.step_watchdog_floor_seconds == 900.0


def test_the_operator_environment_sets_the_floor() -> None:
    settings = OperatorSettings.from_env(
        {"KUBETUNE_TRAINER_IMAGE": SETTINGS.trainer_image, "KUBETUNE_STEP_WATCHDOG_FLOOR_SECONDS": "120"}
    )

    data = _config_map_data(settings)

    assert json.loads(data)["runtime"]["stepWatchdogFloorSeconds"] == 120.0
