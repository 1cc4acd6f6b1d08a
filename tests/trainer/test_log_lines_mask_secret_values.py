"""No log line carries a secret value, even when a library's error (and its traceback) quotes one."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from kubetune_trainer import log_masking
from kubetune_trainer.contract import ModelSource, WandbTarget
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import trainer_config

TOKEN = "hf_SENTINELlogToken321"
WANDB_KEY = "wandbSENTINELkey654"


def _logger(stream: io.StringIO, secrets: list[str]) -> logging.Logger:
    logger = logging.getLogger(f"kubetune-test-masking-{id(stream)}")
    logger.propagate = False
    logger.handlers = [logging.StreamHandler(stream)]
    log_masking.install(logger, fmt="%(levelname)s %(name)s: %(message)s", secrets=secrets)
    return logger


def test_the_jobs_secret_variables_are_masked_in_messages_and_tracebacks(tiny_llama: TinyModel, tmp_path: Path) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "train.jsonl")
    config = config.model_copy(
        update={
            "model": config.model.model_copy(update={"token_env": "MY_HF_TOKEN"}),
            "wandb": WandbTarget(project="p", api_key_env="MY_WANDB_KEY"),
        }
    )
    # A Secret made with `echo token > file` holds a trailing newline: both forms are masked.
    environ = {"MY_HF_TOKEN": f"{TOKEN}\n", "MY_WANDB_KEY": WANDB_KEY, "HOME": "/home/trainer", "RANK": "0"}
    stream = io.StringIO()
    logger = _logger(stream, log_masking.secret_values(config, environ))

    try:
        raise ValueError(f"Illegal header value b'Bearer {TOKEN}\\n'")  # as httpx words a refused header
    except ValueError:
        logger.exception("stage DataDownload failed")
    logger.warning("retrying with key %s", WANDB_KEY)

    text = stream.getvalue()
    assert TOKEN not in text
    assert WANDB_KEY not in text
    assert text.count(log_masking.MASK) >= 2
    assert "Traceback (most recent call last)" in text  # the traceback is still there to debug with
    assert "/home/trainer" not in log_masking.secret_values(config, environ)  # only secret variables


def test_short_values_are_not_masked_so_lines_stay_readable(tiny_llama: TinyModel, tmp_path: Path) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "train.jsonl")
    config = config.model_copy(update={"model": ModelSource(**{**config.model.model_dump(), "token_env": "T"})})

    assert log_masking.secret_values(config, {"T": "1", "HF_TOKEN": ""}) == []
