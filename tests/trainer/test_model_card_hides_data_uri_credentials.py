"""Presigned signatures and user:password in a data URI stay out of the model card and the errors.

The model card is published with the model (possibly on the Hub); a training file given as a
presigned https:// URL would otherwise hand its signature to every reader.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kubetune_trainer.contract import DataSource
from kubetune_trainer.data.sources import SourceSettings, fetch
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import model_card, trainer_config

TRAINING_URI = "https://alice:hunter2@data.example/train.jsonl?X-Amz-Signature=s3cr3tsig&X-Amz-Credential=AKIAX"
VALIDATION_URI = "https://data.example/valid.jsonl?sig=v4lidsig#frag"
SECRETS = ("hunter2", "alice", "s3cr3tsig", "AKIAX", "v4lidsig")


def test_model_card_names_the_files_without_their_credentials(tiny_llama: TinyModel, tmp_path: Path) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "unused.jsonl")
    config = config.model_copy(update={"data": DataSource(training_file=TRAINING_URI, validation_file=VALIDATION_URI)})

    card = model_card(config, model=tiny_llama)

    assert "https://data.example/train.jsonl" in card
    assert "https://data.example/valid.jsonl" in card
    for secret in SECRETS:
        assert secret not in card


def test_download_errors_leave_out_user_and_password(tmp_path: Path) -> None:
    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403)

    with httpx.Client(transport=httpx.MockTransport(forbidden)) as client, pytest.raises(InvalidInput) as refused:
        fetch(
            TRAINING_URI,
            field="spec.trainingFile",
            dest_dir=tmp_path,
            settings=SourceSettings(pvc_mount_root=tmp_path),
            environ={},
            http=client,
        )
    shown = str(refused.value) + repr(refused.value.to_job_error(None))
    assert "data.example/train.jsonl" in shown
    for secret in SECRETS:
        assert secret not in shown
