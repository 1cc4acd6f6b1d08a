"""A loopback Hugging Face Hub: enough of the HTTP API for `snapshot_download`, `hf_hub_download`
and `HfApi.model_info`/`list_repo_files`, with the hub's real error signalling.

What it emulates (checked against huggingface_hub 2.4.0):
- `GET /api/models/{repo}[/revision/{rev}]`: model info with sha, gated, private and siblings;
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file list (no pagination; small repos only);
- `GET /api/whoami-v2`: the answer `identities` holds for the request's bearer token (a dict, or a
  status such as 403 to refuse it), 401 for any other token or none, as the hub refuses a bad one;
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: file bytes with X-Repo-Commit and ETag, no Xet headers,
  so downloads are plain HTTP;
- errors as the hub sends them, a status plus `X-Error-Code`, which `hf_raise_for_status` turns
  into RepositoryNotFoundError (401 RepoNotFound: missing, or private without a token),
  RevisionNotFoundError (404), GatedRepoError (401 GatedRepo on a gated file without a token),
  EntryNotFoundError (404), and plain 5xx for `fail_with`.
What it does not: uploads, pagination, authentication beyond "some Authorization header".
Every request path is recorded in `requests`, so a test can prove a file was never fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .loopback import serve_on_loopback


@dataclass
class MockRepo:
    folder: Path
    refs: dict[str, str]
    gated: bool = False
    private: bool = False

    def resolve(self, revision: str) -> str | None:
        return revision if revision in self.refs.values() else self.refs.get(revision)

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file())


@dataclass
class MockHub:
    repos: dict[str, MockRepo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    fail_with: int | None = None
    """When set, every request answers with this status (e.g. 503), as a hub outage would."""
    endpoint: str = ""
    identities: dict[str, dict[str, Any] | int] = field(default_factory=dict)
    """whoami's answer per token: the user, its orgs and the token's role, or an HTTP status refusing it."""

    def add(
        self, repo_id: str, folder: Path, *, sha: str, revisions: tuple[str, ...] = ("main",), **flags: bool
    ) -> None:
        self.repos[repo_id] = MockRepo(folder=folder, refs=dict.fromkeys(revisions, sha), **flags)

    def fetched_files(self) -> list[str]:
        """Paths of every file body served (GET on /resolve/), in order."""
        return [
            p.split("/resolve/", 1)[1].split("/", 1)[1]
            for p in self.requests
            if p.startswith("GET /") and "/resolve/" in p
        ]


def _handler(hub: MockHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data: Any) -> None:
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def _error(self, code: int, error_code: str) -> None:
            message = f"{error_code} (mock hub)"
            body = json.dumps({"error": message}).encode()
            self._send(code, body, {"X-Error-Code": error_code, "X-Error-Message": message})

        def _repo(self, repo_id: str) -> MockRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not self.headers.get("Authorization")):
                return None
            return repo

        def _resolved(self, repo_id: str, revision: str) -> tuple[MockRepo, str] | None:
            """The repo and the commit `revision` names; None once 401 RepoNotFound or 404 RevisionNotFound is sent."""
            repo = self._repo(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound")
                return None
            sha = repo.resolve(revision)
            if sha is None:
                self._error(404, "RevisionNotFound")
                return None
            return repo, sha

        def _serve(self) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            if hub.fail_with is not None:
                self._send(hub.fail_with, b"upstream unavailable")
                return
            if path == "/api/whoami-v2":
                self._whoami()
            elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                self._info(match[1], match[2] or "main")
            elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path):
                self._tree(match[1], match[2])
            elif match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                self._file(match[1], match[2], match[3])
            else:
                self._error(404, "NotFound")

        def _whoami(self) -> None:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            identity = hub.identities.get(token)
            if identity is None:
                return self._send(401, b'{"error": "Invalid credentials in Authorization header"}')
            if isinstance(identity, int):
                return self._send(identity, b'{"error": "Forbidden"}')
            return self._json(identity)

        def _info(self, repo_id: str, revision: str) -> None:
            if (found := self._resolved(repo_id, revision)) is None:
                return None
            repo, sha = found
            siblings = [{"rfilename": name} for name in repo.files()]
            gated = "manual" if repo.gated else False
            return self._json(
                {"id": repo_id, "sha": sha, "private": repo.private, "gated": gated, "siblings": siblings}
            )

        def _tree(self, repo_id: str, revision: str) -> None:
            if (found := self._resolved(repo_id, revision)) is None:
                return None
            repo, _ = found
            entries = []
            for name in repo.files():
                data = (repo.folder / name).read_bytes()
                oid = hashlib.sha1(data, usedforsecurity=False).hexdigest()
                entries.append({"type": "file", "path": name, "size": len(data), "oid": oid})
            return self._json(entries)

        def _file(self, repo_id: str, revision: str, name: str) -> None:
            if (found := self._resolved(repo_id, revision)) is None:
                return None
            repo, sha = found
            if repo.gated and not self.headers.get("Authorization"):
                return self._error(401, "GatedRepo")
            target = repo.folder / name
            if not target.is_file():
                return self._error(404, "EntryNotFound")
            data = target.read_bytes()
            headers = {
                "X-Repo-Commit": sha,
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                "Content-Type": "application/octet-stream",
            }
            return self._send(200, data, headers)

    return Handler


@contextmanager
def serve_mock_hub() -> Iterator[MockHub]:
    """A MockHub on a free loopback port; pass `hub.endpoint` as HF_ENDPOINT in the environ given to our code."""
    hub = MockHub()
    with serve_on_loopback(_handler(hub)) as url:
        hub.endpoint = url
        yield hub
