"""`python -m kubetune_trainer [preflight] --config FILE`: what a trainer or preflight pod runs.

The preflight subcommand checks the model and the data without weights and leaves its Result
in the termination log (the operator reads it before holding any GPU); an unreadable config
is told plainly, with exit code 2.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from kubetune_trainer.cli import main
from kubetune_trainer.contract import ErrorClass, Outcome, Result, TrainerConfig
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import trainer_config, write_chat_data


def _config(tmp_path: Path, *, repo: str, hf_home: Path) -> Path:
    train_file, validation_file = write_chat_data(tmp_path / "data", train=8, validation=4)
    base = trainer_config(tmp_path)
    config = base.model_copy(
        update={
            "model": base.model.model_copy(update={"repo": repo}),
            "data": base.data.model_copy(
                update={"training_file": str(train_file), "validation_file": str(validation_file)}
            ),
            "runtime": base.runtime.model_copy(update={"cache_dir": str(hf_home / "hub")}),
        }
    )
    path = tmp_path / "trainer-config.json"
    path.write_text(config.to_json())
    return path


def test_preflight_passes_a_good_model_and_data_without_loading_weights(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    config_file = _config(tmp_path, repo=tiny_llama.repo_id, hf_home=tiny_hf_home)
    stream = io.StringIO()

    code = main(["preflight", "--config", str(config_file)], environ=offline_env, stream=stream)

    assert code == 0, stream.getvalue()
    config = TrainerConfig.from_json(config_file.read_text())
    result = Result.from_termination_message(Path(config.termination_log_path).read_text())
    assert result.outcome is Outcome.SUCCEEDED
    assert result.model is not None
    assert result.model.revision_sha == tiny_llama.revision_sha
    assert stream.getvalue().startswith("Succeeded")


def test_preflight_refuses_a_missing_model_in_its_result(
    tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    config_file = _config(tmp_path, repo="tiny-org/no-such-model", hf_home=tiny_hf_home)
    stream = io.StringIO()

    code = main(["preflight", "--config", str(config_file)], environ=offline_env, stream=stream)

    assert code == 2
    result = Result.from_termination_message((tmp_path / "termination-log").read_text())
    assert result.error is not None
    assert result.error.error_class is ErrorClass.INVALID_INPUT
    assert "hint: " in stream.getvalue()


def test_an_unreadable_config_exits_2_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "trainer-config.json"
    broken.write_text('{"job": {}}')

    done = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "--config", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert f"cannot read the trainer config {broken}" in done.stderr
