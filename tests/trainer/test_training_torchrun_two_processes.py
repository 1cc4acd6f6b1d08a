"""`torchrun --nproc-per-node 2` (gloo, CPU) trains the same job as one process, with DDP and with FSDP2;
only rank 0 reports and writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kubetune_trainer.contract import Strategy
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, trainer_config, write_jsonl

TORCHRUN = Path(sys.executable).parent / "torchrun"
EXIT_THREADS = Path(__file__).parent / "exit_threads"
"""A `sitecustomize` that records each rank's threads as it exits."""


def _job(tiny_llama: TinyModel, hf_home: Path, work_dir: Path, data_dir: Path, strategy: Strategy) -> Path:
    config = trainer_config(
        tiny_llama,
        work_dir=work_dir,
        training_file=data_dir / "train.jsonl",
        validation_file=data_dir / "validation.jsonl",
        report="terminal",
        batch_size=8,
        n_epochs=1,
        n_evals=1,
        n_checkpoints=1,
    )
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"cache_dir": str(hf_home / "hub"), "strategy": strategy})}
    )
    path = work_dir / "job.json"
    work_dir.mkdir(parents=True)
    path.write_text(config.to_json(), encoding="utf-8")
    return path


def _weights(work_dir: Path) -> dict[str, torch.Tensor]:
    (found,) = (work_dir / "uploaded").rglob("model.safetensors")
    return load_file(str(found))


@pytest.fixture(scope="module")
def job_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    write_jsonl(data / "train.jsonl", chat_lines(48, seed=6))
    write_jsonl(data / "validation.jsonl", chat_lines(6, seed=7))
    return data


def _environ(offline_env: dict[str, str]) -> dict[str, str]:
    # One thread per process either way: 2 ranks on 2 cores, and equal arithmetic in both runs.
    return {**offline_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture(scope="module")
def single_process_weights(
    tiny_llama: TinyModel, tiny_hf_home: Path, job_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, torch.Tensor]:
    """The job trained by one plain process (`python -m kubetune_trainer --config FILE`)."""
    work_dir = tmp_path_factory.mktemp("single") / "work"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ.update(HF_HOME=str(tiny_hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetune_trainer",
            "--config",
            str(_job(tiny_llama, tiny_hf_home, work_dir, job_data, Strategy.DDP)),
        ],
        env=_environ(environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    return _weights(work_dir)


@pytest.mark.parametrize("strategy", [Strategy.DDP, Strategy.FSDP])
def test_two_ranks_train_like_one_and_only_rank_0_writes(  # noqa: PLR0917 (pytest fixtures)
    strategy: Strategy,
    single_process_weights: dict[str, torch.Tensor],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    job_data: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    double = tmp_path / "double"
    logs = tmp_path / "logs"
    exits = tmp_path / "exit-threads.jsonl"
    environ = _environ(offline_env)
    environ.update(
        PYTHONPATH=os.pathsep.join([str(EXIT_THREADS), environ["PYTHONPATH"]]), KUBETUNE_TEST_EXIT_THREADS=str(exits)
    )
    two = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc-per-node",
            "2",
            "--log-dir",
            str(logs),
            "--redirects",
            "3",
            "-m",
            "kubetune_trainer",
            "--config",
            str(_job(tiny_llama, tiny_hf_home, double, job_data, strategy)),
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rank_logs = {int(p.parent.name): p.read_text() for p in logs.rglob("stderr.log")}
    assert two.returncode == 0, two.stderr[-3000:] + str(rank_logs)[-3000:]

    # The same six optimizer steps of 8 examples: each rank trains half of every step, and the
    # step's loss is normalised over both halves, so the weights match the single process.
    single_weights, double_weights = single_process_weights, _weights(double)
    assert single_weights.keys() == double_weights.keys()
    for name, weight in single_weights.items():
        torch.testing.assert_close(double_weights[name], weight, rtol=1e-4, atol=2e-5, msg=name)
    assert not torch.equal(
        single_weights["model.layers.0.self_attn.q_proj.weight"],
        load_file(str(tiny_llama.snapshot_path / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"],
    )

    # Rank 0 alone reports stages and progress; rank 1 trains silently.
    assert set(rank_logs) == {0, 1}
    assert "==> Training" in rank_logs[0]
    assert "==> Training" not in rank_logs[1]
    # Rank 0 alone writes: one checkpoint with both ranks' RNG state, one output, one termination log.
    (checkpoint,) = (double / "checkpoints" / "tiny" / "uid-1234").iterdir()
    assert sorted(p.name for p in checkpoint.glob("rng-*.pt")) == ["rng-0.pt", "rng-1.pt"]
    assert (double / "termination-log").read_text().startswith('{"outcome":"Succeeded"')

    # Each rank ended its process group before exiting: no gloo thread was left to the interpreter's shutdown,
    # where a rank once aborted with SIGABRT (docs/testing.md).
    exited = [json.loads(line) for line in exits.read_text(encoding="utf-8").splitlines()]
    assert sorted(each["rank"] for each in exited) == ["0", "1"]
    for each in exited:
        assert not [name for name in each["threads"] if "gloo" in name], each
