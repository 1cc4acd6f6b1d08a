"""The real five stages on a tiny Llama: a verified output is uploaded; an output damaged after writing is not.

The damaged run uses the pipeline's own seam (`stages=`) to pass the Saving stage a function
that overwrites the saved weights with the untrained ones between writing and verifying, as a
saving bug would. The run fails in Saving with ValueError / OutputVerificationFailed in the
termination message, Upload never starts, and the destination does not exist.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kubetune_trainer.contract import ErrorClass, Outcome, Result, Stage, StageState, TrainerConfig
from kubetune_trainer.handoffs import SavedModel
from kubetune_trainer.pipeline import STAGES, Stages, run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.stages import save
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, trainer_config, write_jsonl


def _config(tiny_llama: TinyModel, tiny_hf_home: Path, tmp_path: Path) -> TrainerConfig:
    config = trainer_config(
        tiny_llama,
        work_dir=tmp_path / "work",
        training_file=write_jsonl(tmp_path / "train.jsonl", chat_lines(16, seed=3)),
        batch_size=8,
        n_evals=0,
    )
    runtime = config.runtime.model_copy(update={"cache_dir": str(tiny_hf_home / "hub")})
    return config.model_copy(update={"runtime": runtime})


def _run(
    config: TrainerConfig, offline_env: dict[str, str], *, saving: Callable[..., SavedModel | None]
) -> tuple[Result, RecordingReporter]:
    reporter = RecordingReporter()
    stages: Stages = dataclasses.replace(STAGES, save=saving)
    result = run_pipeline(
        config, environ=offline_env, clock=lambda: datetime.now(UTC), reporter=reporter, stages=stages
    )
    return result, reporter


def test_a_verified_output_is_uploaded(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    config = _config(tiny_llama, tiny_hf_home, tmp_path)

    result, reporter = _run(config, offline_env, saving=save.run)

    assert result.outcome is Outcome.SUCCEEDED, result.error
    assert [n for n in reporter.notes if n.startswith("verified tiny-out")]
    uploaded = Path(config.output.uri)
    assert (uploaded / "model.safetensors").is_file()
    assert "output_verification_loss_difference" in (uploaded / "README.md").read_text(encoding="utf-8")


def test_an_output_damaged_before_verification_is_never_uploaded(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    config = _config(tiny_llama, tiny_hf_home, tmp_path)
    untrained = (tiny_llama.snapshot_path / "model.safetensors").read_bytes()

    def save_the_untrained_weights(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(untrained)

    result, reporter = _run(
        config, offline_env, saving=functools.partial(save.run, before_verify=save_the_untrained_weights)
    )

    written = Result.from_termination_message(Path(config.termination_log_path).read_text(encoding="utf-8"))
    assert written == result
    assert written.outcome is Outcome.FAILED
    assert written.exit_code == 3
    assert written.error is not None
    assert (written.error.error_class, written.error.reason, written.error.stage) == (
        ErrorClass.VALUE_ERROR,
        "OutputVerificationFailed",
        Stage.SAVING,
    )
    assert "the saved weights are not the trained ones" in written.error.message
    final = reporter.transitions[-1][1]
    assert [(r.name, r.state) for r in final][-1] == (Stage.SAVING, StageState.FAILED)
    assert Stage.UPLOAD not in [r.name for r in final]
    assert written.output is None
    assert not Path(config.output.uri).exists()
