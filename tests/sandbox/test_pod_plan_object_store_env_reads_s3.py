"""A rendered preflight pod, its env built as the sandbox's kubelet builds it (the Secret's keys resolved),
reads s3:// data from an S3-style store (moto's server, as MinIO or Ceph would serve it) signed with the
Secret's access key; without the Secret reference the same read fails with the trainer's credentials error."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from kubetune_sandbox.layout import SandboxLayout

from ..trainer.loopback import serve_on_loopback, serve_s3_on_loopback
from .rendered_pods import plan, pod_of, rendered

TRAIN = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
ACCESS_KEY_ID = "AKIAMINIOEXAMPLE"
SECRET_ACCESS_KEY = "minio-SENTINEL-secret-key"
KEYS = {
    "metadata": {"name": "minio-keys"},
    "data": {
        "user": base64.b64encode(ACCESS_KEY_ID.encode()).decode(),
        "password": base64.b64encode(SECRET_ACCESS_KEY.encode()).decode(),
    },
}
# What the trainer's data step does with a pod's environment: fetch the URI, print the file.
READ = (
    "import os, pathlib, sys\n"
    "from kubetune_trainer.data.sources import SourceSettings, fetch\n"
    "from kubetune_trainer.errors import TrainerError\n"
    "work = pathlib.Path(sys.argv[2])\n"
    "settings = SourceSettings(pvc_mount_root=work / 'pvc', timeout_seconds=5.0, retries=0)\n"
    "try:\n"
    "    path = fetch(sys.argv[1], field='spec.trainingFile', dest_dir=work, settings=settings, environ=os.environ)\n"
    "except TrainerError as error:\n"
    "    print(error.reason, error, file=sys.stderr)\n"
    "    sys.exit(3)\n"
    "sys.stdout.write(path.read_text())\n"
)


class _Recorder(BaseHTTPRequestHandler):
    """Forwards every request to moto, keeping the Authorization headers (which name the access key id)."""

    upstream = ""
    authorizations: ClassVar[list[str]] = []

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.authorizations.append(self.headers.get("Authorization", ""))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
        reply = httpx.request(self.command, f"{self.upstream}{self.path}", headers=headers, content=body)
        self.send_response(reply.status_code)
        for key, value in reply.headers.items():
            if key.lower() not in {"content-length", "transfer-encoding", "connection", "content-encoding"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.content)

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    """An S3-style endpoint (moto behind a recording proxy) holding s3://datasets/chat/train.jsonl."""
    with serve_s3_on_loopback({"s3://datasets/chat/train.jsonl": TRAIN}) as upstream:
        _Recorder.upstream = upstream
        with serve_on_loopback(_Recorder) as proxy:
            yield proxy


def _read_in_preflight_pod(storage: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    fields = {"trainingFile": "s3://datasets/chat/train.jsonl", "storage": storage}
    objects = rendered(fields, preflight=True)
    pod = pod_of(objects["Job"], index=None)
    process = plan(pod, objects, layout=SandboxLayout(tmp_path / "sandbox"), secrets={"minio-keys": KEYS})
    # The pod's environment exactly, plus where this checkout's trainer is (the image has it installed).
    env = {**process.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", READ, "s3://datasets/chat/train.jsonl", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_preflight_pod_reads_s3_data_with_the_secrets_keys_endpoint_and_region(store: str, tmp_path: Path) -> None:
    _Recorder.authorizations.clear()
    storage = {
        "s3": {
            "credentialsSecretRef": {"name": "minio-keys", "accessKeyIdKey": "user", "secretAccessKeyKey": "password"},
            "endpointUrl": store,
            "region": "eu-west-3",
        }
    }
    done = _read_in_preflight_pod(storage, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.encode() == TRAIN
    assert _Recorder.authorizations, "the read went through the job's endpoint"
    for authorization in _Recorder.authorizations:
        assert f"Credential={ACCESS_KEY_ID}/" in authorization, "signed with the Secret's access key id"
        assert "/eu-west-3/s3/" in authorization, "signed for the job's region"
    assert SECRET_ACCESS_KEY not in done.stdout + done.stderr


def test_without_the_secret_reference_the_read_fails_with_the_credentials_error(store: str, tmp_path: Path) -> None:
    done = _read_in_preflight_pod({"s3": {"endpointUrl": store, "region": "us-east-1"}}, tmp_path)
    assert done.returncode == 3, done.stderr
    assert "credentials" in done.stderr.lower()
