"""Upload puts the whole model at its destination or nothing, and a second upload changes nothing.

Local and pvc:// destinations are checked on disk; s3:// against moto's S3 server on loopback.
Failures are real: a dangling symlink stops a local copy; for S3 a loopback proxy in front of
moto answers 403 AccessDenied to one key, as a bucket policy would, part way through an upload.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
import pytest

from kubetune_trainer.errors import InfrastructureFailure, InvalidInput
from kubetune_trainer.storage import (
    MANIFEST_NAME,
    LocalDestination,
    S3Destination,
    S3Settings,
    destination_for,
    upload,
)

from .loopback import serve_on_loopback, serve_s3_on_loopback


def _model_dir(root: Path, *, weights: bytes = b"\x00" * 4096) -> Path:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(weights)
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pvc_upload_twice_gives_the_same_files_and_no_leftovers(tmp_path: Path) -> None:
    source = _model_dir(tmp_path / "saved")
    destination = destination_for("pvc://models/team/tiny-ft", pvc_mount_root=str(tmp_path / "mnt"))
    assert destination == LocalDestination(tmp_path / "mnt" / "models" / "team" / "tiny-ft")

    first = upload(source, destination, uri="pvc://models/team/tiny-ft", name="tiny-ft")
    after_first = _tree(destination.path)
    second = upload(source, destination, uri="pvc://models/team/tiny-ft", name="tiny-ft")

    assert first == second
    assert (first.files, first.bytes) == (3, 4096 + len('{"model_type": "llama"}') + 2)
    assert _tree(destination.path) == after_first
    assert set(after_first) == {"model.safetensors", "config.json", "tokenizer/tokenizer.json", MANIFEST_NAME}
    assert sorted(p.name for p in destination.path.parent.iterdir()) == ["tiny-ft"]


def test_a_new_model_replaces_the_old_one_whole(tmp_path: Path) -> None:
    destination = LocalDestination(tmp_path / "out" / "model")
    upload(_model_dir(tmp_path / "v1"), destination, uri=str(destination.path), name="m")
    (tmp_path / "v1" / "extra.txt").write_text("only in v1")
    v2 = _model_dir(tmp_path / "v2", weights=b"\x01" * 100)

    upload(v2, destination, uri=str(destination.path), name="m")

    assert (destination.path / "model.safetensors").read_bytes() == b"\x01" * 100
    assert not (destination.path / "extra.txt").exists()
    manifest = json.loads((destination.path / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "tokenizer/tokenizer.json"}
    assert sorted(p.name for p in destination.path.parent.iterdir()) == ["model"]


def test_a_failed_local_copy_leaves_the_destination_absent(tmp_path: Path) -> None:
    source = _model_dir(tmp_path / "saved")
    (source / "zz-broken").symlink_to(tmp_path / "nowhere")
    destination = LocalDestination(tmp_path / "out" / "model")

    with pytest.raises(InfrastructureFailure) as failure:
        upload(source, destination, uri=str(destination.path), name="m")

    assert failure.value.reason == "UploadFailed"
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "fix"),
    [
        ("pvc://only-claim", "pvc://CLAIM/PATH"),
        ("pvc://models/../../etc/out", "no '..'"),
        ("s3://bucket", "s3://BUCKET/PREFIX"),
        ("gs://b/p", "hf://ORG/NAME"),
    ],
)
def test_unusable_output_uris_name_the_field_and_the_fix(uri: str, fix: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        destination_for(uri, pvc_mount_root="/mnt/pvc")
    assert refused.value.field == "output.uri"
    assert fix in (refused.value.hint or "")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with serve_s3_on_loopback() as url:
        yield url


@pytest.fixture
def s3(s3_endpoint: str, tmp_path: Path) -> tuple[S3Settings, Any, str]:
    settings = S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
    )
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"models-{tmp_path.name.replace('_', '-').lower()}"[:63]
    client.create_bucket(Bucket=bucket)
    return settings, client, bucket


def _objects(client: Any, bucket: str) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def test_s3_upload_twice_gives_the_same_objects_with_the_manifest(
    s3: tuple[S3Settings, Any, str], tmp_path: Path
) -> None:
    settings, client, bucket = s3
    source = _model_dir(tmp_path / "saved")
    uri = f"s3://{bucket}/runs/tiny-ft"

    first = upload(source, destination_for(uri, pvc_mount_root="/unused"), uri=uri, name="tiny-ft", s3=settings)
    after_first = _objects(client, bucket)
    second = upload(source, S3Destination(uri), uri=uri, name="tiny-ft", s3=settings)

    assert first == second
    assert _objects(client, bucket) == after_first
    assert set(after_first) == {
        f"runs/tiny-ft/{name}"
        for name in ("model.safetensors", "config.json", "tokenizer/tokenizer.json", MANIFEST_NAME)
    }
    assert after_first["runs/tiny-ft/model.safetensors"] == b"\x00" * 4096


def test_s3_upload_of_a_new_model_drops_files_the_old_one_had(s3: tuple[S3Settings, Any, str], tmp_path: Path) -> None:
    settings, client, bucket = s3
    uri = f"s3://{bucket}/m"
    old = _model_dir(tmp_path / "old")
    (old / "extra.bin").write_bytes(b"old")
    upload(old, S3Destination(uri), uri=uri, name="m", s3=settings)

    upload(_model_dir(tmp_path / "new", weights=b"\x02" * 10), S3Destination(uri), uri=uri, name="m", s3=settings)

    objects = _objects(client, bucket)
    assert "m/extra.bin" not in objects
    assert objects["m/model.safetensors"] == b"\x02" * 10
    assert set(json.loads(objects[f"m/{MANIFEST_NAME}"])["files"]) == {
        "model.safetensors",
        "config.json",
        "tokenizer/tokenizer.json",
    }


_DENIED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"""


@pytest.fixture
def denying_proxy(s3_endpoint: str) -> Iterator[str]:
    """An S3 endpoint that forwards to moto but refuses PUTs of keys containing `denied`."""
    upstream = urlsplit(s3_endpoint)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # botocore sends `Expect: 100-continue`, answered only in 1.1

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command == "PUT" and "denied" in self.path:
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_DENIED)))
                self.end_headers()
                self.wfile.write(_DENIED)
                return
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
            connection.request(self.command, self.path, body=body, headers=headers)
            reply = connection.getresponse()
            content = reply.read()
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in {"transfer-encoding", "content-length", "connection", "server", "date"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward  # noqa: N815 (http.server's names)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_on_loopback(Proxy) as url:
        yield url


def test_an_s3_upload_that_fails_part_way_leaves_nothing(
    s3: tuple[S3Settings, Any, str], denying_proxy: str, tmp_path: Path
) -> None:
    _, client, bucket = s3
    settings = S3Settings(endpoint_url=denying_proxy, access_key_id="testing", secret_access_key="testing")
    source = _model_dir(tmp_path / "saved")
    # Sorted last, so every other file is already uploaded when the store refuses this one.
    (source / "zz-denied.bin").write_bytes(b"x")
    uri = f"s3://{bucket}/m"

    with pytest.raises(InvalidInput) as failure:
        upload(source, S3Destination(uri), uri=uri, name="m", s3=settings)

    # A refusal is the job's input (its credentials), named and not retried: a retry meets it again.
    assert (failure.value.reason, failure.value.field, failure.value.retryable) == ("AccessDenied", "output.uri", False)
    assert "Access Denied" in failure.value.message
    assert _objects(client, bucket) == {}


def test_s3_settings_never_show_credentials() -> None:
    settings = S3Settings.from_env({"AWS_ACCESS_KEY_ID": "AKIASECRET", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"})
    assert "AKIASECRET" not in repr(settings)
    assert "s3cr3t-value" not in repr(settings)


class FakeHub:
    """Records what an upload asks of huggingface_hub's HfApi (the Hub is unreachable here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id: str, *, token: str | None, private: bool, exist_ok: bool) -> None:
        self.calls.append(
            ("create_repo", {"repo_id": repo_id, "token": token, "private": private, "exist_ok": exist_ok})
        )

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        commit_message: str | None,
        token: str | None,
        delete_patterns: str | None,
    ) -> None:
        self.calls.append(("upload_folder", {"repo_id": repo_id, "token": token, "delete_patterns": delete_patterns}))
        self.uploaded = _tree(Path(folder_path))


def test_hf_upload_is_one_commit_of_the_whole_folder_replacing_what_was_there(tmp_path: Path) -> None:
    source = _model_dir(tmp_path / "saved")
    hub = FakeHub()
    destination = destination_for("hf://acme/tiny-chat", pvc_mount_root="/unused")

    summary = upload(
        source, destination, uri="hf://acme/tiny-chat", name="tiny-chat", hub=hub, hub_token="hf_x", private=True
    )

    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": "acme/tiny-chat", "token": "hf_x", "private": True, "exist_ok": True}
    assert hub.calls[1][1]["delete_patterns"] == "*"
    assert set(hub.uploaded) == {"model.safetensors", "config.json", "tokenizer/tokenizer.json", MANIFEST_NAME}
    assert summary.files == 3
    assert not list(tmp_path.glob(".*"))  # no copy of the model beside it
