"""An upload that fails never shows the token in its error, though the library's own message quotes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.errors import InfrastructureFailure

from .answering_hub import serve_answering_hub, upload_to_hub

SENTINEL = "hf_SENTINELwriteToken456"


def test_a_token_ending_in_a_newline_fails_the_upload_without_showing_it(tmp_path: Path) -> None:
    # What the hub answers does not matter: the request never leaves with that header.
    with serve_answering_hub(500) as hub, pytest.raises(InfrastructureFailure) as failed:
        # as a Secret made with `echo token > file` holds it
        upload_to_hub(tmp_path, endpoint=hub.url, token=f"{SENTINEL}\n")

    error = failed.value.to_job_error()
    assert error.reason == "UploadFailed"
    assert "Illegal header value" in error.message  # what went wrong is still said
    assert SENTINEL not in error.message
    assert SENTINEL not in (error.hint or "")
