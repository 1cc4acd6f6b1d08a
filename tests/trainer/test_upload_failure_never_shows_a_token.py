"""An upload that fails never shows the token in its error, though the library's own message quotes it."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from kubetune_trainer.errors import InfrastructureFailure
from kubetune_trainer.storage import HubDestination, upload

SENTINEL = "hf_SENTINELwriteToken456"


@pytest.fixture
def endpoint() -> Iterator[str]:
    with socketserver.TCPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def test_a_token_ending_in_a_newline_fails_the_upload_without_showing_it(endpoint: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")

    with pytest.raises(InfrastructureFailure) as failed:
        upload(
            model,
            HubDestination("org/out"),
            uri="hf://org/out",
            name="out",
            hub=HfApi(endpoint=endpoint),
            hub_token=f"{SENTINEL}\n",  # as a Secret made with `echo token > file` holds it
        )

    error = failed.value.to_job_error()
    assert error.reason == "UploadFailed"
    assert "Illegal header value" in error.message  # what went wrong is still said
    assert SENTINEL not in error.message
    assert SENTINEL not in (error.hint or "")
