"""The Upload stage reaches the hub the download reached: HF_ENDPOINT, and the token as the download reads it.

A token Secret made with `echo token > file` ends in a newline. The download strips it; an upload
that sent it raw would have every hf:// output refused (and retried) while the model came down
fine. A self-hosted hub (HF_ENDPOINT) must receive the upload too, not huggingface.co.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubetune_trainer.context import DistInfo, RunContext, WorkPaths
from kubetune_trainer.contract import OutputTarget
from kubetune_trainer.errors import InfrastructureFailure
from kubetune_trainer.handoffs import SavedModel
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.stages import upload
from kubetune_trainer.tiny_model import TinyModel

from .answering_hub import saved_model, serve_answering_hub
from .training_jobs import trainer_config

SENTINEL = "hf_SENTINELuploadToken789"


def _context(tiny_llama: TinyModel, tmp_path: Path, *, endpoint: str) -> tuple[RunContext, SavedModel]:
    """A context and Saving's hand-off, for a job whose output is an hf:// repo and whose token is HF_TOKEN."""
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "train.jsonl")
    config = config.model_copy(
        update={
            "model": config.model.model_copy(update={"token_env": "HF_TOKEN"}),
            "output": OutputTarget(uri="hf://org/tiny-out", model_name="tiny-out"),
        }
    )
    ctx = RunContext(
        config=config,
        environ={"HF_TOKEN": f"{SENTINEL}\n", "HF_ENDPOINT": endpoint},
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        reporter=RecordingReporter(),
        dist=DistInfo(),
        paths=WorkPaths(tmp_path),
    )
    return ctx, SavedModel(folder=saved_model(tmp_path / "saved"), name="tiny-out")


def test_the_upload_goes_to_hf_endpoint_with_the_stripped_token(tiny_llama: TinyModel, tmp_path: Path) -> None:
    # The loopback hub answers 500 to everything: an outage.
    with serve_answering_hub(500) as hub, pytest.raises(InfrastructureFailure) as failed:
        upload.run(*_context(tiny_llama, tmp_path, endpoint=hub.url))

    assert hub.requests, "the upload never reached HF_ENDPOINT"
    assert {authorization for _, authorization in hub.requests} == {f"Bearer {SENTINEL}"}
    error = failed.value.to_job_error()
    assert error.retryable  # a hub answering 500 is an outage: retried
    assert SENTINEL not in error.message
