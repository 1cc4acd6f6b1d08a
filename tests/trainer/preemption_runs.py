"""Helpers for the SIGTERM and resume tests: a small resumable job, the real trainer as a subprocess.

The job is 16 optimizer steps (2 epochs of 8) with checkpoints and evaluations at steps 8 and 16.
A test-only stall fault (`faults.py`) holds one step for a few seconds, so a SIGTERM sent while
that step runs lands at a known step on every machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import LoraConfig, ReportTarget, Result, TrainerConfig
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, trainer_config, write_jsonl

TORCHRUN = Path(sys.executable).parent / "torchrun"


def resumable_job(
    model: TinyModel,
    *,
    hf_home: Path,
    work_dir: Path,
    checkpoints: Path,
    lora: LoraConfig | None = None,
    resume_from: str | None = None,
    grace_seconds: float = 25.0,
    n_checkpoints: int = 2,
) -> TrainerConfig:
    """16 steps (2 epochs of 8) on 32 conversations; checkpoints under `checkpoints` (a root: `<root>/tiny/`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    training = write_jsonl(work_dir / "train.jsonl", chat_lines(32, seed=6))
    validation = write_jsonl(work_dir / "validation.jsonl", chat_lines(6, seed=7))
    config = trainer_config(
        model,
        work_dir=work_dir,
        training_file=training,
        validation_file=validation,
        lora=lora,
        report="terminal",
        n_epochs=2,
        batch_size=4,
        n_evals=2,
        n_checkpoints=n_checkpoints,
    )
    runtime = config.runtime.model_copy(
        update={
            "cache_dir": str(hf_home / "hub"),
            "checkpoint_uri": f"file://{checkpoints}",
            "resume_from": resume_from,
            "checkpoint_grace_seconds": grace_seconds,
        }
    )
    return config.model_copy(
        update={"runtime": runtime, "report": ReportTarget(kind="terminal", min_interval_seconds=0.0)}
    )


def subprocess_environ(offline_env: dict[str, str], *, stall_step: int, stall_seconds: float) -> dict[str, str]:
    """One thread per process (the same arithmetic as the in-process runs) and a stall at `stall_step`."""
    faults = FaultPlan(faults=(Fault(kind="stall", step=stall_step, seconds=stall_seconds),))
    return {**offline_env, **faults.to_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def start_trainer(config: TrainerConfig, *, environ: dict[str, str], nproc: int = 1) -> subprocess.Popen[str]:
    """`python -m kubetune_trainer --config FILE`, or under `torchrun --standalone` with `nproc` ranks."""
    path = Path(config.runtime.work_dir) / "job.json"
    path.write_text(config.to_json(), encoding="utf-8")
    trainer = ["-m", "kubetune_trainer", "--config", str(path)]
    command = (
        [sys.executable, *trainer]
        if nproc == 1
        else [str(TORCHRUN), "--standalone", "--nproc-per-node", str(nproc), *trainer]
    )
    return subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_line(process: subprocess.Popen[str], marker: str, *, timeout: float = 120.0) -> list[str]:
    """Read the trainer's output until a line contains `marker`; the lines read so far."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    # readline, not iteration: a `for` over the pipe left early would close it (and break the trainer's stderr).
    while line := process.stderr.readline():
        lines.append(line)
        if marker in line:
            return lines
        assert time.monotonic() < deadline, f"no line with {marker!r} in {timeout} s:\n" + "".join(lines[-30:])
    raise AssertionError(f"the trainer ended before printing {marker!r}:\n" + "".join(lines[-30:]))


def finish(process: subprocess.Popen[str], *, timeout: float = 120.0) -> str:
    """Wait for the process; the rest of its output."""
    _, rest = process.communicate(timeout=timeout)
    return rest


def result_of(config: TrainerConfig) -> Result:
    return Result.from_termination_message(Path(config.termination_log_path).read_text(encoding="utf-8"))


def run_in_process(config: TrainerConfig, *, offline_env: dict[str, str]) -> tuple[Result, dict[int, float]]:
    """The whole pipeline in this process (one thread, as the subprocesses); the Result and per-step losses."""
    reporter = RecordingReporter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_pipeline(
            config,
            environ=offline_env,
            clock=lambda: datetime.now(UTC),
            reporter=reporter,
            dist=DistInfo(),
        )
    finally:
        torch.set_num_threads(threads)
    # Step reports carry the loss; evaluation reports repeat it beside the eval loss.
    return result, {p.step: p.loss for p in reporter.progresses if p.loss is not None and p.eval_loss is None}


def output_weights(config: TrainerConfig) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file of the saved output (a merged model and, under LoRA, its adapter)."""
    root = Path(config.output.uri)
    return {
        f"{path.relative_to(root)}:{name}": tensor
        for path in sorted(root.rglob("*.safetensors"))
        for name, tensor in load_file(str(path)).items()
    }


def step_losses(lines: list[str]) -> dict[int, float]:
    """step -> loss from the terminal reporter's progress lines (4 decimals)."""
    losses: dict[int, float] = {}
    for line in lines:
        words = line.split()
        if "loss" in words and "/" in words[1] and "eval" not in line.split("loss", 1)[0]:
            losses[int(words[1].split("/")[0])] = float(words[words.index("loss") + 1])
    return losses


def assert_same_weights(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-6, rtol=0, msg=name)
