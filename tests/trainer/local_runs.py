"""Helpers for the `kubetune run --local` tests: chat data the tiny models can learn, manifests, the command.

The data are conversations over the fixed word chain the tiny tokenizers were trained on: the
user says the first half of a sentence, the assistant the rest. The chain is low-entropy, so a
few steps lower the eval loss clearly (uniformly random words would not move it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubetune_trainer.contract import Result
from kubetune_trainer.tiny_model import markov_sentences

STAGE_LINES = ["==> DataDownload", "==> Initialization", "==> Training", "==> Saving", "==> Upload"]


def write_chat_data(directory: Path, *, train: int = 64, validation: int = 16) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    sentences = markov_sentences(train + validation, seed=1)

    def conversation(sentence: str) -> dict[str, Any]:
        words = sentence.split()
        half = max(1, len(words) // 2)
        return {
            "messages": [
                {"role": "user", "content": " ".join(words[:half])},
                {"role": "assistant", "content": " ".join(words[half:])},
            ]
        }

    train_file, validation_file = directory / "train.jsonl", directory / "valid.jsonl"
    train_file.write_text("".join(json.dumps(conversation(s)) + "\n" for s in sentences[:train]))
    validation_file.write_text("".join(json.dumps(conversation(s)) + "\n" for s in sentences[train:]))
    return train_file, validation_file


def write_manifest(path: Path, *, name: str, spec: dict[str, Any]) -> Path:
    manifest = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def chat_spec(repo: str, data: tuple[Path, Path], **extra: Any) -> dict[str, Any]:
    """A small full fine-tuning job on `repo` with `model: auto`: 16 steps of 8 conversations."""
    train_file, validation_file = data
    spec: dict[str, Any] = {
        "model": "auto",
        "fromHfModel": repo,
        "trainingFile": str(train_file),
        "validationFile": str(validation_file),
        "hyperparameters": {"nEpochs": 2, "batchSize": 8, "learningRate": 3e-3, "nEvals": 1, "seed": 7},
        "lora": {"enabled": False},
        "suffix": "chat",
    }
    spec.update(extra)
    return spec


@dataclass(frozen=True)
class LocalRun:
    returncode: int
    output: str
    """Everything the command printed (stdout and stderr, interleaved as a terminal shows them)."""
    workdir: Path

    @property
    def result(self) -> Result:
        return Result.from_termination_message((self.workdir / "termination-log").read_text(encoding="utf-8"))

    def stage_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("==> ")]


def kubetune_run(
    manifest: Path, *, workdir: Path, hf_home: Path, environ: dict[str, str], extra: tuple[str, ...] = ()
) -> LocalRun:
    """`kubetune run MANIFEST --local ...` in a subprocess, as a user types it."""
    command = [
        sys.executable,
        "-m",
        "kubetune_operator.cli",
        "run",
        str(manifest),
        "--local",
        "--workdir",
        str(workdir),
        "--hf-home",
        str(hf_home),
        *extra,
    ]
    done = subprocess.run(
        command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False
    )
    return LocalRun(returncode=done.returncode, output=done.stdout, workdir=workdir)


def model_card_lineage(model_dir: Path) -> dict[str, Any]:
    """The machine-readable lineage block at the end of the model card."""
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    block = card.split("## Lineage (machine-readable)", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    lineage: dict[str, Any] = json.loads(block)
    return lineage
