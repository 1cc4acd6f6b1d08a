"""A loopback HTTP endpoint that answers every request with one status: an object store in an outage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from .loopback import serve_on_loopback


@dataclass
class FailingEndpoint:
    url: str
    requests: list[str] = field(default_factory=list)
    """`METHOD path` of every request answered."""


@contextmanager
def serve_failing_endpoint(status: int = 500) -> Iterator[FailingEndpoint]:
    """An S3-shaped error (XML body, `InternalError`) for every method and path."""
    endpoint = FailingEndpoint(url="")
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error. Please try again.</Message></Error>"
    )

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            endpoint.requests.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_HEAD(self) -> None:
            self._answer()

        def do_PUT(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def do_DELETE(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_on_loopback(Handler) as url:
        endpoint.url = url
        yield endpoint
