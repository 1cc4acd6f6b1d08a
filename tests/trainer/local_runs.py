"""Helpers for the `kubetune run --local` tests: chat data the tiny models can learn, manifests, the command.

The data are conversations over the fixed word chain the tiny tokenizers were trained on: the
user says the first half of a sentence, the assistant the rest. The chain is low-entropy, so a
few steps lower the eval loss clearly (uniformly random words would not move it).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoModelForCausalLM

from kubetune_operator.cli import build_parser
from kubetune_operator.cli.run import run_local
from kubetune_trainer.classify import EXIT_CODES
from kubetune_trainer.contract import (
    DataSource,
    ErrorClass,
    JobError,
    JobIdentity,
    LrScheduler,
    ModelSource,
    OutputTarget,
    ReportTarget,
    Result,
    RuntimeSettings,
    Stage,
    TemplateExpectations,
    TrainerConfig,
    TrainingHyperparameters,
)
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.tiny_model import markov_sentences

from ..conftest import CATALOG_DIR

PROMPT_SECONDS = 120
"""How soon a rank out of memory must end an FSDP run: well under the subprocess timeout (300 s) and any
collective timeout, since a mismatched collective waits longer."""

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


def fsdp_catalog(directory: Path) -> Path:
    """The packaged catalog with every template sharding (FSDP2) instead of replicating (DDP), for `--catalog`."""
    shutil.copytree(CATALOG_DIR, directory)
    for template in directory.glob("*.yaml"):
        template.write_text(template.read_text().replace("strategy: ddp", "strategy: fsdp"))
    return directory


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
    manifest: Path,
    *,
    workdir: Path,
    hf_home: Path,
    environ: dict[str, str],
    extra: tuple[str, ...] = (),
    in_process: bool = True,
) -> LocalRun:
    """`kubetune run MANIFEST --local ...`, as a user types it.

    In process (the default) the command line is parsed by `kubetune`'s own parser and run by
    the function behind it with `environ` as its environment: the same code as the console
    script, without paying torch's import time per run. `in_process=False` starts the console
    script in a subprocess (needed where the run starts processes of its own: torchrun).
    """
    argv = ["run", str(manifest), "--local", "--workdir", str(workdir), "--hf-home", str(hf_home), *extra]
    if in_process:
        args = build_parser().parse_args(argv)
        environ = {**environ, "HF_HOME": str(hf_home)}
        stream = io.StringIO()
        code = run_local(args, environ=environ, stream=stream)
        return LocalRun(returncode=code, output=stream.getvalue(), workdir=workdir)
    done = subprocess.run(
        [sys.executable, "-m", "kubetune_operator.cli", *argv],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    return LocalRun(returncode=done.returncode, output=done.stdout, workdir=workdir)


def train_tiny_chat(
    repo: str, tmp_path: Path, *, hf_home: Path, environ: dict[str, str], lora: bool, name: str
) -> LocalRun:
    """`kubetune run --local` of one epoch of 16 conversations in steps of 8 on `repo`, full fine-tuning or LoRA
    r 8 (merged): a model family's run from manifest to saved model. The saved model is under tmp_path/work/output."""
    data = write_chat_data(tmp_path / "data", train=16, validation=4)
    spec = chat_spec(repo, data, lora={"enabled": True, "r": 8} if lora else {"enabled": False})
    spec["hyperparameters"] |= {"nEpochs": 1, "batchSize": 8}
    manifest = write_manifest(tmp_path / "job.yaml", name=name, spec=spec)
    return kubetune_run(manifest, workdir=tmp_path / "work", hf_home=hf_home, environ=environ)


def assert_saved_model_loads(run: LocalRun, model_type: str) -> None:
    """The run's one saved model loads with transformers as `model_type` and gives finite logits."""
    saved = next((run.workdir / "output").iterdir())
    model = AutoModelForCausalLM.from_pretrained(saved)
    assert model.config.model_type == model_type
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()


def fsdp_oom_run(
    tmp_path: Path,
    *,
    model_repo: str,
    hf_home: Path,
    environ: dict[str, str],
    name: str,
    auto_batch: bool,
    fault: Fault,
) -> tuple[LocalRun, float]:
    """Two FSDP ranks of `kubetune run --local` (one epoch, batchSize 8) with `fault`: the run and its seconds."""
    catalog = fsdp_catalog(tmp_path / "catalog")
    data = write_chat_data(tmp_path / "data", train=16, validation=4)
    spec = chat_spec(model_repo, data)
    spec["hyperparameters"] |= {"nEpochs": 1, "batchSize": 8, "autoBatchOnOOM": auto_batch}
    manifest = write_manifest(tmp_path / "job.yaml", name=name, spec=spec)
    faults = FaultPlan(faults=(fault,)).to_env()
    started = time.monotonic()
    run = kubetune_run(
        manifest,
        workdir=tmp_path / "work",
        hf_home=hf_home,
        environ={**environ, **faults},
        extra=("--nproc-per-node", "2", "--catalog", str(catalog)),
        in_process=False,
    )
    return run, time.monotonic() - started


def assert_ended_at_once_as_cuda_oom(run: LocalRun, elapsed: float) -> JobError:
    """An `fsdp_oom_run` that failed within PROMPT_SECONDS as CudaOOM in Training (no rank hung); its error."""
    assert run.returncode != 0, run.output
    assert elapsed < PROMPT_SECONDS, run.output
    assert run.result.exit_code == EXIT_CODES[ErrorClass.CUDA_OOM], run.output
    error = run.result.error
    assert error is not None
    assert (error.error_class, error.stage) == (ErrorClass.CUDA_OOM, Stage.TRAINING)
    return error


def model_card_lineage(model_dir: Path) -> dict[str, Any]:
    """The machine-readable lineage block at the end of the model card."""
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    block = card.split("## Lineage (machine-readable)", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    lineage: dict[str, Any] = json.loads(block)
    return lineage


def trainer_config(tmp_path: Path) -> TrainerConfig:
    """A valid TrainerConfig whose paths are all under `tmp_path`, for tests that run no real stage."""
    return TrainerConfig(
        job=JobIdentity(namespace="ml", name="chat", uid="uid-1234"),
        model=ModelSource(
            repo="tiny-org/tiny-llama",
            template=TemplateExpectations(
                name="llama-3.2-1b-instruct",
                family="llama",
                model_types=["llama"],
                architectures=["LlamaForCausalLM"],
                parameters=1_000_000_000,
                max_seq_length=4096,
                transformers_ceiling="5.99",
            ),
        ),
        data=DataSource(training_file=str(tmp_path / "train.jsonl")),
        hyperparameters=TrainingHyperparameters(
            n_epochs=1,
            learning_rate=1e-3,
            batch_size=8,
            lr_scheduler=LrScheduler(),
            warmup_ratio=0.0,
            max_grad_norm=1.0,
            weight_decay=0.0,
            n_checkpoints=1,
            n_evals=1,
            train_on_inputs="auto",
            max_seq_length=256,
            packing=True,
            seed=1,
        ),
        output=OutputTarget(uri=str(tmp_path / "out"), model_name="tiny-llama-chat"),
        runtime=RuntimeSettings(work_dir=str(tmp_path / "work"), cache_dir=str(tmp_path / "hf")),
        report=ReportTarget(kind="none"),
        termination_log_path=str(tmp_path / "termination-log"),
    )
