"""A job given a checkpoint to resume from is told that training starts over instead.

The operator hands `runtime.resumeFrom` to a retry and to a `fromCheckpoint` job, but the trainer
has no checkpoint loader yet: without this warning the run looks like it continued.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl


def test_resume_from_is_reported_as_not_loaded(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    lines = chat_lines(4, seed=2)
    config = trainer_config(
        tiny_llama,
        work_dir=tmp_path,
        training_file=write_jsonl(tmp_path / "t.jsonl", lines),
        n_evals=0,
        batch_size=4,
    )
    config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"resume_from": "tiny:12"})})
    ctx, _ = training_context(config, model=tiny_llama, tokenizer=tokenizer, train=tokenized(tokenizer, lines))

    initialize.run(ctx)
    train.run(ctx)

    notes = [note for note in ctx.warnings if note.reason == "ResumeNotImplemented"]
    assert len(notes) == 1
    assert "tiny:12" in notes[0].message
    assert "step 0" in notes[0].message
    assert ctx.metrics["steps"] == 1.0
