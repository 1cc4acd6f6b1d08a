"""autoBatchOnOOM: a step that runs out of memory is retried in smaller micro-batches, and nothing else changes.

The fault hook raises `torch.OutOfMemoryError` in every forward pass whose micro-batch holds more
than half the token budget. The run halves the budget, retries step 1 and keeps the smaller
budget; its final weights and every step's loss equal those of a run given the small budget from
the start (the effective batch and the loss normalisation never depend on the micro-batches).
Two processes never wait on each other: when one of them keeps running out whatever the budget,
both halve together and then both fail as CudaOOM (a recoverable case under DDP is in
test_training_oom_two_ddp_ranks_halve_together.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from kubetune_trainer.classify import EXIT_CODES
from kubetune_trainer.contract import ErrorClass, Outcome, Stage
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import chat_spec, kubetune_run, write_chat_data, write_manifest
from .training_jobs import chat_lines, tokenized, trainer_config, training_context

BUDGET = 256
"""The CPU token budget is the sequence length: 256 here, so 8 short conversations pack into 2 micro-batches."""


def _train(
    tiny: TinyModel, tmp_path: Path, *, token_budget: int, environ: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[float], Any, RecordingReporter]:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny.snapshot_path))
    lines = chat_lines(24, seed=3)
    examples = tokenized(tokenizer, lines, max_seq_length=BUDGET)
    assert max(len(example) for example in examples) <= BUDGET // 2  # so half the budget still fits each one
    config = trainer_config(
        tiny, work_dir=tmp_path, training_file=tmp_path / "unused.jsonl", n_evals=0, max_seq_length=BUDGET
    )
    ctx, reporter, downloaded = training_context(
        config, model=tiny, tokenizer=tokenizer, train=examples, environ=environ
    )
    # On a CPU the micro-batch budget is the sequence length.
    downloaded = dataclasses.replace(downloaded, max_seq_length=token_budget)
    initialized = initialize.run(ctx, downloaded)
    train.run(ctx, downloaded, initialized)
    weights = {name: tensor.detach().clone() for name, tensor in initialized.model.state_dict().items()}
    # One loss per step (a step's report may be repeated to carry the checkpoint it just completed).
    losses = list({p.step: p.loss for p in reporter.progresses if p.loss is not None}.values())
    return weights, losses, ctx, reporter


def test_a_step_out_of_memory_is_retried_in_half_the_tokens_and_trains_exactly_the_same(
    tiny_llama: TinyModel, tmp_path: Path
) -> None:
    oom_above_half = FaultPlan(faults=(Fault(kind="oom", above_tokens=BUDGET // 2),)).to_env()

    reduced, reduced_losses, ctx, reporter = _train(
        tiny_llama, tmp_path / "reduced", token_budget=BUDGET, environ=oom_above_half
    )
    small, small_losses, _, _ = _train(tiny_llama, tmp_path / "small", token_budget=BUDGET // 2, environ={})

    assert len(reduced_losses) == len(small_losses) == 3
    assert reduced_losses == small_losses
    for name, tensor in small.items():
        torch.testing.assert_close(reduced[name], tensor, rtol=0, atol=1e-6, msg=name)
    warnings = [note for note in ctx.journal.warnings if note.reason == "MicroBatchReduced"]
    assert len(warnings) == 1  # once reduced, later steps start at the smaller budget
    assert "step 1" in warnings[0].message
    assert f"budget of {BUDGET // 2} tokens" in warnings[0].message
    assert "batchSize" in warnings[0].message
    assert warnings[0].message in reporter.notes


def _oom_run(tmp_path: Path, tiny: TinyModel, hf_home: Path, environ: dict[str, str], **extra: Any) -> Any:
    data = write_chat_data(tmp_path / "data", train=16, validation=4)
    spec = chat_spec(tiny.repo_id, data)
    spec["hyperparameters"] |= {"nEpochs": 1, "batchSize": 8}
    manifest = write_manifest(tmp_path / "job.yaml", name="oom", spec=spec)
    return kubetune_run(manifest, workdir=tmp_path / "work", hf_home=hf_home, environ=environ, **extra)


def test_the_run_succeeds_and_its_result_says_which_micro_batch_it_used(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    faults = FaultPlan(faults=(Fault(kind="oom", above_tokens=64),)).to_env()
    run = _oom_run(tmp_path, tiny_llama, tiny_hf_home, {**offline_env, **faults})

    assert run.returncode == 0, run.output
    result = run.result
    assert result.outcome is Outcome.SUCCEEDED
    reductions = [note.message for note in result.warnings if note.reason == "MicroBatchReduced"]
    assert reductions
    assert "budget of 64 tokens" in reductions[-1]
    assert reductions[-1] in run.output  # the terminal shows it too


def test_two_processes_both_fail_as_cuda_oom_when_one_runs_out_and_none_hangs(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    faults = FaultPlan(faults=(Fault(kind="oom", step=1, rank=1),)).to_env()
    run = _oom_run(
        tmp_path,
        tiny_llama,
        tiny_hf_home,
        {**offline_env, **faults},
        extra=("--nproc-per-node", "2"),
        in_process=False,
    )

    # The ranks agree and exit 5 (torchrun's summary); torchrun itself exits 1 for any failed
    # worker, and the Result carries the class. The run ends at once: nothing waits for a peer.
    assert run.returncode != 0, run.output
    assert "exitcode  : 5" in run.output
    assert run.result.exit_code == EXIT_CODES[ErrorClass.CUDA_OOM]
    error = run.result.error
    assert error is not None
    assert (error.error_class, error.reason, error.stage) == (
        ErrorClass.CUDA_OOM,
        "OutOfMemoryAtOneExample",
        Stage.TRAINING,
    )
    assert "smallest micro-batches" in error.message
    assert error.hint is not None
    assert "hyperparameters.maxSeqLength" in error.hint
