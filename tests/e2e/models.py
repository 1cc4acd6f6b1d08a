"""The models and data the end-to-end jobs train on, in one real local HF cache.

Every repo is built by the trainer tests' own helpers (tiny random models with a trained
tokenizer, broken the ways real uploads break), so the sandbox's pods load them exactly as a
cluster's pods load a hub model, with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_trainer.hf_cache import publish_folder
from kubetune_trainer.tiny_model import write_tiny_model

from ..conftest import REPO
from ..trainer.broken_repos import an_infinite_weight, config_disagrees_with_weights, publish_broken
from ..trainer.local_runs import write_chat_data
from ..trainer.refused_models import REFUSED, build_case

TINY_LLAMA = "tiny-org/tiny-llama"
REMOTE_CODE = "bad-org/remote-code"
MISMATCHED = "tiny-org/mismatched"
"""config.json says an MLP twice as wide as its tensors: ValueError (WeightsDoNotMatchConfig)."""
DIVERGED = "tiny-org/diverged"
"""One weight is inf: every loss is NaN, RuntimeError (NonFiniteLoss)."""
MALFORMED_DATA = REPO / "tests" / "data" / "bad_data" / "bad_json.jsonl"


@dataclass(frozen=True)
class E2eModels:
    hf_home: Path
    """An HF_HOME whose hub cache holds every repo above."""
    train: Path
    validation: Path
    """Chat conversations the tiny tokenizer knows: 32 to train on (4 steps of 8), 4 to evaluate."""


def build_models(root: Path) -> E2eModels:
    hf_home = root / "hf"
    tiny = write_tiny_model(arch="llama", repo_id=TINY_LLAMA, hf_home=hf_home)
    (remote_code,) = [case for case in REFUSED if case.repo == REMOTE_CODE]
    folder = build_case(remote_code, tiny_snapshot=tiny.snapshot_path, into=root / "sources")
    publish_folder(folder, repo_id=REMOTE_CODE, hub_cache=hf_home / "hub")
    scratch = root / "broken"
    publish_broken(tiny, repo_id=MISMATCHED, hf_home=hf_home, workdir=scratch, damage=config_disagrees_with_weights)
    publish_broken(tiny, repo_id=DIVERGED, hf_home=hf_home, workdir=scratch, damage=an_infinite_weight)
    train, validation = write_chat_data(root / "data", train=32, validation=4)
    return E2eModels(hf_home=hf_home, train=train, validation=validation)


def put_data(volume: Path, *, claim: str, source: Path, as_name: str) -> str:
    """Copy `source` into claim `claim`'s host directory `volume`; the `pvc://` URI a job names it by."""
    target = volume / "data" / as_name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"pvc://{claim}/data/{as_name}"


def finetunejob(name: str, spec: dict[str, Any], *, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def tiny_spec(training_file: str, *, repo: str = TINY_LLAMA, **extra: Any) -> dict[str, Any]:
    """A full fine-tune of 4 steps (32 conversations, batch 8, the template's least) with `model: auto`."""
    spec: dict[str, Any] = {
        "model": "auto",
        "fromHfModel": repo,
        "trainingFile": training_file,
        "hyperparameters": {"nEpochs": 1, "batchSize": 8, "learningRate": 3e-3, "seed": 7},
        "lora": {"enabled": False},
        "maxRetries": 0,
    }
    spec.update(extra)
    return spec
