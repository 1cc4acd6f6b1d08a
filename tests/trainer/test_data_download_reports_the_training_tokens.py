"""DataDownload's stage record carries the training file's token count, which the operator turns into
status.estimate (GPU-hours: tokens x epochs over the template's tokens/s per GPU x GPUs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from transformers import AutoTokenizer

from kubetune_trainer.contract import Outcome, Stage, StageState
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.stages import download
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import resumable_job
from .stand_in_stages import stand_in_stages
from .training_jobs import chat_lines, tokenized


def test_the_data_download_record_counts_the_tokens_trained(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    config = resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "work", checkpoints=tmp_path / "c")
    reporter = RecordingReporter()

    result = run_pipeline(
        config,
        environ=offline_env,
        clock=lambda: datetime.now(UTC),
        reporter=reporter,
        stages=stand_in_stages(download=download.run),  # the real DataDownload; the later stages stand in
    )

    assert result.outcome == Outcome.SUCCEEDED, result.error
    _, records = reporter.transitions[-1]
    record = records[0]
    assert (record.name, record.state) == (Stage.DATA_DOWNLOAD, StageState.SUCCEEDED)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    expected = sum(len(example) for example in tokenized(tokenizer, chat_lines(32, seed=6)))  # resumable_job's data
    assert record.training_tokens == expected
    assert record.to_wire()["trainingTokens"] == expected, "the operator reads it as status.stages[].trainingTokens"
    started, _ = reporter.transitions[0]
    assert started == Stage.DATA_DOWNLOAD
    assert reporter.transitions[0][1][0].training_tokens is None, "counted only once the stage has tokenized"
