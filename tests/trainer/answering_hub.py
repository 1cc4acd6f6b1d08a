"""The setup of the tests that check an upload to the hub is refused or fails as it should.

A loopback hub that answers every request with one status (a 403 refusal, a 500 outage), recording
what it was sent, and a model folder as the Saving stage leaves it, uploaded to `hf://org/out`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from kubetune_trainer.storage import HubDestination, upload

from .loopback import serve_on_loopback


@dataclass
class AnsweringHub:
    url: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """`METHOD path` and the Authorization header of every request answered."""


@contextmanager
def serve_answering_hub(status: int, body: dict[str, Any] | None = None) -> Iterator[AnsweringHub]:
    """A hub at `.url` answering `status` (with `body` as JSON, as the Hub words its errors) to everything."""
    hub = AnsweringHub(url="")
    payload = json.dumps(body).encode() if body is not None else b""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            hub.requests.append((f"{self.command} {self.path}", self.headers.get("Authorization")))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer  # noqa: N815 (the names http.server dispatches to)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_on_loopback(Handler) as url:
        hub.url = url
        yield hub


def saved_model(folder: Path) -> Path:
    """A model folder as Saving leaves it, as small as an upload accepts: a config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def upload_to_hub(tmp_path: Path, *, endpoint: str, token: str) -> None:
    """Upload a saved model to `hf://org/out` on the hub at `endpoint` with `token`, as the Upload stage does."""
    upload(
        saved_model(tmp_path / "model"),
        HubDestination("org/out"),
        uri="hf://org/out",
        name="out",
        hub=HfApi(endpoint=endpoint),
        hub_token=token,
    )
