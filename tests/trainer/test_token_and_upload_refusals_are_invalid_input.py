"""A token no HTTP header can carry, and an upload the server refuses (401/403), are the job's own input
errors: InvalidInput naming the field, never retried, never showing the token. The token is checked
wherever it is first read, so the preflight finds it before any GPU is held."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from kubetune_trainer.contract import ErrorClass, ModelSource, Outcome
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.hub import HubSettings
from kubetune_trainer.preflight import run_preflight
from kubetune_trainer.storage import HubDestination, upload

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


class _Refusing(http.server.BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        body = b'{"error": "You don\'t have the rights to create a model under this namespace"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse  # noqa: N815 (the names http.server dispatches to)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_hub() -> Iterator[str]:
    with socketserver.TCPServer(("127.0.0.1", 0), _Refusing) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_an_upload_the_hub_refuses_is_invalid_input_naming_the_token(refusing_hub: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InvalidInput) as refused:
        upload(
            model,
            HubDestination("org/out"),
            uri="hf://org/out",
            name="out",
            hub=HfApi(endpoint=refusing_hub),
            hub_token=SENTINEL,
        )
    error = refused.value.to_job_error()
    assert (error.error_class, error.reason, error.retryable) == (ErrorClass.INVALID_INPUT, "Unauthorized", False)
    assert refused.value.field == "spec.hfTokenSecretRef"
    assert SENTINEL not in error.message
