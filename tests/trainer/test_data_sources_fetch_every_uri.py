"""`sources.fetch` brings every kind of data URI to a local file, and tells a user's mistake from an outage.

Real servers on loopback, no mocks of our code: an HTTP server for https-style URLs, moto's S3 server
for s3://, and a small dataset hub speaking the Hub's resolve protocol for hf://datasets/...
A missing file, bucket, key or repo is InvalidInput naming the spec field; a 5xx, a refused
connection or a timeout is InfrastructureFailure, which the operator retries.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.data import validate_file
from kubetune_trainer.data.sources import SourceSettings, fetch
from kubetune_trainer.errors import InfrastructureFailure, InvalidInput, TrainerError
from kubetune_trainer.hub import HubSettings

from ..conftest import REPO
from .loopback import serve_s3_on_loopback

TRAIN = (REPO / "tests" / "data" / "good_data" / "messages.jsonl").read_bytes()
FIELD = "spec.trainingFile"
SECRET_TOKEN = "hf_not_a_real_token_123"  # a fake, which no error may ever show
DATASET_SHA = "d" * 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Handler(BaseHTTPRequestHandler):
    """Plain files for https-style URLs, and the Hub's dataset resolve route for hf:// URIs."""

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if hub := re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self.resolve(hub[1], hub[2], hub[3])
        if path == "/data/train.jsonl":
            return self.send(200, TRAIN)
        if path == "/data/stream.jsonl":  # no Content-Length: the limit must hold while streaming
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(4):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(TRAIN), TRAIN))
            self.wfile.write(b"0\r\n\r\n")
            return None
        if path == "/data/slow.jsonl":
            time.sleep(1.0)
            return self.send(200, TRAIN)
        if path == "/data/reset.jsonl":  # promises more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(TRAIN) * 2))
            self.end_headers()
            self.wfile.write(TRAIN)
            self.close_connection = True
            return None
        statuses = {"/data/private.jsonl": 403, "/data/flaky.jsonl": 503}
        return self.send(statuses.get(path, 404), b"no")

    def resolve(self, repo: str, revision: str, filename: str) -> None:
        error = {"X-Error-Message": "no"}
        if repo == "org/flaky":
            # 500 and 502-504 end the same way, after huggingface_hub's own backoff (~23 s): too slow here.
            return self.send(507, b"boom")
        authorized = self.headers.get("Authorization") == f"Bearer {SECRET_TOKEN}"
        if repo not in {"org/chat", "org/private"} or (repo == "org/private" and not authorized):
            return self.send(401, b"{}", {"X-Error-Code": "RepoNotFound", **error})
        if revision not in {"main", DATASET_SHA}:
            return self.send(404, b"{}", {"X-Error-Code": "RevisionNotFound", **error})
        if filename != "data/train.jsonl":
            return self.send(404, b"{}", {"X-Error-Code": "EntryNotFound", **error})
        etag = f'"{hashlib.sha256(TRAIN).hexdigest()}"'
        return self.send(200, TRAIN, {"X-Repo-Commit": DATASET_SHA, "ETag": etag})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with serve_s3_on_loopback({"s3://datasets/chat/train.jsonl": TRAIN}) as endpoint:
        yield endpoint


def s3_environ(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": endpoint}


def settings(tmp_path: Path, **changes: Any) -> SourceSettings:
    values: dict[str, Any] = {
        "pvc_mount_root": tmp_path / "pvc",
        "hf_cache_dir": tmp_path / "hf-cache",
        "timeout_seconds": 5.0,
        "retries": 0,
    }
    return SourceSettings(**(values | changes))


def get(uri: str, tmp_path: Path, *, environ: dict[str, str] | None = None, **changes: Any) -> Path:
    return fetch(
        uri, field=FIELD, dest_dir=tmp_path / "data", settings=settings(tmp_path, **changes), environ=environ or {}
    )


def refused(uri: str, tmp_path: Path, *, environ: dict[str, str] | None = None, **changes: Any) -> TrainerError:
    with pytest.raises(TrainerError) as raised:
        get(uri, tmp_path, environ=environ, **changes)
    error = raised.value
    assert error.field == FIELD
    assert error.hint
    return error


def test_local_paths_and_file_uris_are_used_in_place(tmp_path: Path) -> None:
    local = tmp_path / "train.jsonl"
    local.write_bytes(TRAIN)
    assert get(str(local), tmp_path) == local
    assert get(f"file://{local}", tmp_path) == local


def test_a_pvc_uri_is_read_from_the_claims_mount(tmp_path: Path) -> None:
    mounted = tmp_path / "pvc" / "team-data" / "chat" / "train.jsonl"
    mounted.parent.mkdir(parents=True)
    mounted.write_bytes(TRAIN)
    assert get("pvc://team-data/chat/train.jsonl", tmp_path) == mounted
    error = refused("pvc://team-data/chat/missing.jsonl", tmp_path)
    assert isinstance(error, InvalidInput)
    assert error.reason == "DataFileNotFound"
    assert refused("pvc://team-data/../other/train.jsonl", tmp_path).reason == "UnsupportedDataUri"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("/nowhere/train.jsonl", "DataFileNotFound"),
        ("file:///nowhere/train.jsonl", "DataFileNotFound"),
        # Two slashes: `data` is a host and the path would be /train.jsonl, not data/train.jsonl.
        ("file://data/train.jsonl", "UnsupportedDataUri"),
        ("gs://bucket/train.jsonl", "UnsupportedDataUri"),
        ("hf://org/name/train.jsonl", "UnsupportedDataUri"),
        ("s3://bucket-only", "UnsupportedDataUri"),
    ],
)
def test_a_bad_uri_is_invalid_input_naming_the_field(uri: str, reason: str, tmp_path: Path) -> None:
    error = refused(uri, tmp_path)
    assert isinstance(error, InvalidInput)
    assert not error.retryable
    assert error.reason == reason
    assert FIELD in error.message


def test_https_downloads_a_file_that_validates(server: str, tmp_path: Path) -> None:
    path = get(f"{server}/data/train.jsonl?X-Amz-Signature=secret", tmp_path)
    assert path.read_bytes() == TRAIN
    assert path.name == "train.jsonl"
    assert validate_file(path).ok
    assert not list(path.parent.glob("*.part"))


@pytest.mark.parametrize(
    ("name", "error_type", "reason"),
    [
        ("missing.jsonl", InvalidInput, "DataFileNotFound"),
        ("private.jsonl", InvalidInput, "DataAccessDenied"),
        ("flaky.jsonl", InfrastructureFailure, "DataDownloadFailed"),
    ],
)
def test_https_errors_are_classified(
    server: str, tmp_path: Path, name: str, error_type: type[TrainerError], reason: str
) -> None:
    error = refused(f"{server}/data/{name}?X-Amz-Signature=secret", tmp_path)
    assert type(error) is error_type
    assert error.reason == reason
    assert error.retryable is (error_type is InfrastructureFailure)
    assert "secret" not in error.message  # a presigned URL's signature is never shown


@pytest.mark.parametrize("name", ["train.jsonl", "stream.jsonl"])
def test_https_stops_at_the_size_limit(server: str, tmp_path: Path, name: str) -> None:
    error = refused(f"{server}/data/{name}", tmp_path, max_bytes=len(TRAIN) - 1)
    assert error.reason == "DataFileTooLarge"
    assert not (tmp_path / "data" / "trainingFile" / name).exists()
    assert not list((tmp_path / "data").rglob("*.part"))


def test_a_refused_connection_is_an_outage_not_a_user_error(tmp_path: Path) -> None:
    error = refused(f"http://127.0.0.1:{free_port()}/train.jsonl", tmp_path)
    assert isinstance(error, InfrastructureFailure)
    assert error.retryable


@pytest.mark.parametrize("name", ["slow.jsonl", "reset.jsonl"])
def test_a_timeout_or_a_cut_download_is_an_outage(server: str, tmp_path: Path, name: str) -> None:
    error = refused(f"{server}/data/{name}", tmp_path, timeout_seconds=0.3)
    assert isinstance(error, InfrastructureFailure)
    assert error.retryable
    assert not list((tmp_path / "data").rglob("*.jsonl*"))


def test_s3_downloads_with_the_endpoint_and_keys_from_environ(s3_endpoint: str, tmp_path: Path) -> None:
    path = get("s3://datasets/chat/train.jsonl", tmp_path, environ=s3_environ(s3_endpoint))
    assert path.read_bytes() == TRAIN


@pytest.mark.parametrize(
    ("uri", "reason"),
    [("s3://datasets/chat/missing.jsonl", "DataFileNotFound"), ("s3://no-such-bucket/train.jsonl", "DataFileNotFound")],
)
def test_s3_missing_bucket_or_key_is_invalid_input(s3_endpoint: str, tmp_path: Path, uri: str, reason: str) -> None:
    error = refused(uri, tmp_path, environ=s3_environ(s3_endpoint))
    assert isinstance(error, InvalidInput)
    assert error.reason == reason


def test_s3_size_limit(s3_endpoint: str, tmp_path: Path) -> None:
    error = refused("s3://datasets/chat/train.jsonl", tmp_path, environ=s3_environ(s3_endpoint), max_bytes=10)
    assert error.reason == "DataFileTooLarge"


def test_s3_unreachable_is_an_outage(tmp_path: Path) -> None:
    error = refused("s3://datasets/chat/train.jsonl", tmp_path, environ=s3_environ(f"http://127.0.0.1:{free_port()}"))
    assert isinstance(error, InfrastructureFailure)
    assert error.reason == "DataDownloadFailed"


def hub_environ(server: str, **extra: str) -> dict[str, str]:
    return {"HF_ENDPOINT": server, **extra}


def test_hf_dataset_file_downloads_into_the_cache(server: str, tmp_path: Path) -> None:
    path = get("hf://datasets/org/chat/data/train.jsonl", tmp_path, environ=hub_environ(server))
    assert path.read_bytes() == TRAIN
    assert (tmp_path / "hf-cache") in path.parents
    assert DATASET_SHA in path.parts
    # Offline, the cached file is found again; a file never downloaded is a user error.
    offline = hub_environ(server, HF_HUB_OFFLINE="1")
    assert get(f"hf://datasets/org/chat@{DATASET_SHA}/data/train.jsonl", tmp_path, environ=offline) == path
    error = refused("hf://datasets/org/other/data/train.jsonl", tmp_path, environ=offline)
    assert (type(error), error.reason) == (InvalidInput, "DataFileNotFound")


def test_hf_private_dataset_uses_the_token_from_the_named_variable(server: str, tmp_path: Path) -> None:
    environ = hub_environ(server, HF_TOKEN_FOR_JOB=SECRET_TOKEN)
    path = get("hf://datasets/org/private/data/train.jsonl", tmp_path, environ=environ, hf_token_env="HF_TOKEN_FOR_JOB")
    assert path.read_bytes() == TRAIN
    error = refused(
        "hf://datasets/org/private/data/train.jsonl",
        tmp_path,
        environ=hub_environ(server),
        hf_cache_dir=tmp_path / "cold-cache",
    )
    assert error.reason == "DataRepoNotFound"


@pytest.mark.parametrize(
    ("uri", "error_type", "reason"),
    [
        ("hf://datasets/org/absent/data/train.jsonl", InvalidInput, "DataRepoNotFound"),
        ("hf://datasets/org/chat/data/absent.jsonl", InvalidInput, "DataFileNotFound"),
        ("hf://datasets/org/chat@v9/data/train.jsonl", InvalidInput, "DataFileNotFound"),
        ("hf://datasets/org/flaky/data/train.jsonl", InfrastructureFailure, "DataDownloadFailed"),
    ],
)
def test_hf_errors_are_classified_and_never_show_the_token(
    server: str, tmp_path: Path, uri: str, error_type: type[TrainerError], reason: str
) -> None:
    environ = hub_environ(server, HF_TOKEN_FOR_JOB=SECRET_TOKEN)
    error = refused(uri, tmp_path, environ=environ, hf_token_env="HF_TOKEN_FOR_JOB")
    assert (type(error), error.reason) == (error_type, reason)
    assert SECRET_TOKEN not in f"{error.message} {error.hint}"


def test_a_token_secret_ending_in_a_newline_still_reads_a_private_dataset(server: str, tmp_path: Path) -> None:
    """`echo token > file; kubectl create secret --from-file` leaves a newline, which HTTP refuses in a header.

    hf:// data reads the token as the model download does (`hub.HubSettings`), stripped.
    """
    environ = hub_environ(server, HF_TOKEN_FOR_JOB=f"{SECRET_TOKEN}\n")
    path = get("hf://datasets/org/private/data/train.jsonl", tmp_path, environ=environ, hf_token_env="HF_TOKEN_FOR_JOB")
    assert path.read_bytes() == TRAIN
    assert HubSettings.from_env(environ, token_env="HF_TOKEN_FOR_JOB").token == SECRET_TOKEN


def test_an_unreachable_hub_is_an_outage_naming_the_field(tmp_path: Path) -> None:
    error = refused(
        "hf://datasets/org/chat/data/train.jsonl",
        tmp_path,
        environ=hub_environ(f"http://127.0.0.1:{free_port()}", HF_TOKEN_FOR_JOB=SECRET_TOKEN),
        hf_token_env="HF_TOKEN_FOR_JOB",
    )
    assert (type(error), error.reason, error.retryable) == (InfrastructureFailure, "DataDownloadFailed", True)
    assert SECRET_TOKEN not in f"{error.message} {error.hint}"
