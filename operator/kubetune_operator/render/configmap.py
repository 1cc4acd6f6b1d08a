"""The ConfigMap holding a TrainerConfig as JSON, mounted read-only into the trainer's pods."""

from __future__ import annotations

from typing import Any

from kubetune_trainer.contract import TrainerConfig

from .labels import JobRef, metadata_for

CONFIG_KEY = "config.json"
CONFIG_DIR = "/etc/kubetune"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"


def config_map(job: JobRef, *, name: str, labels: dict[str, str], config: TrainerConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata_for(job, name=name, labels=labels),
        "immutable": True,
        "data": {CONFIG_KEY: config.to_json()},
    }
