"""A token no HTTP header can carry, and an upload the server refuses (401/403), are the job's own input
errors: InvalidInput naming the field, never retried, never showing the token. The token is checked
wherever it is first read, so the preflight finds it before any GPU is held."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.contract import ErrorClass, ModelSource, Outcome
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.hub import HubSettings
from kubetune_trainer.preflight import run_preflight

from .answering_hub import serve_answering_hub, upload_to_hub
from .local_runs import trainer_config

SENTINEL = "hf_SENTINELtoken789"


@pytest.mark.parametrize("token", [f"{SENTINEL}\nsecond-line", f"{SENTINEL}\u00e9"], ids=["newline", "non-ascii"])
def test_a_token_no_header_can_carry_is_invalid_input_naming_the_secret(token: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        HubSettings.from_env({"HF_TOKEN": token}, token_env="HF_TOKEN")
    error = refused.value.to_job_error()
    assert (error.reason, refused.value.field, error.retryable) == ("InvalidToken", "spec.hfTokenSecretRef", False)
    assert SENTINEL not in error.message
    assert SENTINEL not in (error.hint or "")


def test_a_trailing_newline_is_still_forgiven() -> None:
    settings = HubSettings.from_env({"HF_TOKEN": f"{SENTINEL}\n"}, token_env="HF_TOKEN")
    assert settings.token == SENTINEL


def test_the_preflight_finds_a_bad_token_before_any_gpu(tmp_path: Path) -> None:
    config = trainer_config(tmp_path)
    config = config.model_copy(update={"model": ModelSource.parse({**config.model.to_wire(), "tokenEnv": "HF_TOKEN"})})
    result = run_preflight(config, environ={"HF_TOKEN": f"{SENTINEL}\nx", "HF_HUB_OFFLINE": "1"})
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.error_class, result.error.reason) == (ErrorClass.INVALID_INPUT, "InvalidToken")
    assert SENTINEL not in result.to_termination_message()


def test_an_upload_the_hub_refuses_is_invalid_input_naming_the_token(tmp_path: Path) -> None:
    refusal = {"error": "You don't have the rights to create a model under this namespace"}
    with serve_answering_hub(403, refusal) as hub, pytest.raises(InvalidInput) as refused:
        upload_to_hub(tmp_path, endpoint=hub.url, token=SENTINEL)
    assert hub.requests, "the upload never reached the hub"
    error = refused.value.to_job_error()
    assert (error.error_class, error.reason, error.retryable) == (ErrorClass.INVALID_INPUT, "Unauthorized", False)
    assert refused.value.field == "spec.hfTokenSecretRef"
    assert SENTINEL not in error.message
