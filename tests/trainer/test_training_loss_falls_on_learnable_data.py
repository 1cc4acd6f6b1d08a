"""Initialization then Training on a tiny Llama: the eval loss falls clearly, progress is reported every step."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from transformers import AutoTokenizer

from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint import METADATA_FILE, STATE_FILE, CheckpointState

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl


def test_eval_loss_falls_and_every_step_is_reported(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    train_lines, validation_lines = chat_lines(96, seed=1), chat_lines(16, seed=2)
    config = trainer_config(
        tiny_llama,
        work_dir=tmp_path,
        training_file=write_jsonl(tmp_path / "train.jsonl", train_lines),
        n_epochs=3,
        n_evals=3,
        n_checkpoints=2,
    )
    # The job's checkpoint location, as `kubetune run --local` maps it to a directory.
    config = config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"checkpoint_uri": f"file://{tmp_path / 'ckpt'}"})}
    )
    ctx, reporter, downloaded = training_context(
        config,
        model=tiny_llama,
        tokenizer=tokenizer,
        train=tokenized(tokenizer, train_lines),
        validation=tokenized(tokenizer, validation_lines),
    )

    initialized = initialize.run(ctx, downloaded)
    assert initialized.model.config.use_cache is False  # packed sequences stay isolated only without a KV cache
    trained = train.run(ctx, downloaded, initialized)

    # 96 examples, 8 per step, 3 epochs.
    assert trained.total_steps == 36
    before, after = trained.metrics["eval_loss_before"], trained.metrics["eval_loss"]
    assert after < 0.75 * before, (before, after)

    steps = [p for p in reporter.progresses if p.loss is not None and p.eval_loss is None]
    # Every step once, in order; a step is reported again only to carry the checkpoint or evaluation
    # it just completed (progress.recentCheckpoints / recentEvals), as soon as it is complete.
    assert list(dict.fromkeys(p.step for p in steps)) == list(range(1, 37))
    repeated = [p for earlier, p in itertools.pairwise(steps) if p.step == earlier.step]
    assert 18 in [p.step for p in repeated]
    assert all(p.step in [r.step for r in (*p.recent_checkpoints, *p.recent_evals)] for p in repeated)
    steps = [p for p in steps if not any(p is again for again in repeated)]  # each step's own report
    assert all(p.total_steps == 36 and p.tokens_per_second and p.tokens_per_second > 0 for p in steps)
    assert all(p.learning_rate is not None and p.eta_seconds is not None for p in steps)
    assert steps[-1].epoch is not None
    assert math.isclose(steps[-1].epoch, 3.0)
    evals = [p for p in reporter.progresses if p.eval_loss is not None]
    # One before training, then n_evals spread out (the last step's report repeats it with the last checkpoint).
    assert list(dict.fromkeys(p.step for p in evals)) == [0, 12, 24, 36]

    # n_checkpoints=2: complete checkpoints at the middle and the end, nothing half-written left over.
    checkpoints = sorted(p.name for p in (tmp_path / "ckpt" / "tiny" / "uid-1234").glob("step-*"))  # one per job uid
    assert checkpoints == ["step-00000018", "step-00000036"]
    last = tmp_path / "ckpt" / "tiny" / "uid-1234" / "step-00000036"
    files = {p.relative_to(last).as_posix() for p in last.rglob("*") if p.is_file()}
    assert {METADATA_FILE, "shards/__0_0.distcp", STATE_FILE, "scheduler.pt", "rng-0.pt", "COMPLETE"} <= files
    state = CheckpointState.model_validate_json((last / STATE_FILE).read_text())
    assert (state.step, state.epoch, state.step_in_epoch) == (36, 3, 0)
