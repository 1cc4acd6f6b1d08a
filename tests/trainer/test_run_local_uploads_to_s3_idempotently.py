"""`kubetune run --local --upload` to an s3:// output (moto's S3 server on loopback), then the upload again.

The bucket holds exactly the model's files plus the completion manifest, each object matching
the manifest's sha256, and nothing else under the prefix. Uploading the same saved model again
(the Upload stage retried) changes nothing. How a new model replaces an old one whole, and how
a failed upload leaves nothing, is in test_pipeline_upload_is_complete_or_absent.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from kubetune_trainer.contract import Outcome
from kubetune_trainer.storage import MANIFEST_NAME, S3Destination, S3Settings, upload
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import chat_spec, kubetune_run, write_chat_data, write_manifest
from .loopback import serve_s3_on_loopback

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with serve_s3_on_loopback() as url:
        yield url


def _objects(client: Any, bucket: str) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def _assert_complete(objects: dict[str, bytes], prefix: str) -> None:
    """Exactly the manifest's files plus the manifest, each with the content the manifest names."""
    listed = json.loads(objects[f"{prefix}/{MANIFEST_NAME}"])["files"]
    assert set(objects) == {f"{prefix}/{MANIFEST_NAME}", *(f"{prefix}/{name}" for name in listed)}
    for name, entry in listed.items():
        assert hashlib.sha256(objects[f"{prefix}/{name}"]).hexdigest() == entry["sha256"], name


def test_a_local_run_uploads_to_s3_complete_and_uploads_again_idempotently(
    s3_endpoint: str, tiny_qwen2: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    # A bucket of its own: moto keeps one store per process, and under pytest-xdist another module's run may have
    # written into a bucket named `models` on this worker first (test_trainer_never_leaks_secrets.py does).
    bucket = "upload-idempotence"
    client.create_bucket(Bucket=bucket)
    environ = {**offline_env, **CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    data = write_chat_data(tmp_path / "data")
    uri = f"s3://{bucket}/team/qwen-chat"
    spec = chat_spec(tiny_qwen2.repo_id, data, output={"uri": uri})
    manifest = write_manifest(tmp_path / "job.yaml", name="tiny-s3", spec=spec)

    first = kubetune_run(
        manifest, workdir=tmp_path / "first", hf_home=tiny_hf_home, environ=environ, extra=("--upload",)
    )
    assert first.returncode == 0, first.output
    assert first.result.outcome is Outcome.SUCCEEDED
    assert first.result.output is not None
    assert first.result.output.uri == uri
    after_first = _objects(client, bucket)
    _assert_complete(after_first, "team/qwen-chat")
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= {
        key.rsplit("/", 1)[-1] for key in after_first
    }
    assert tiny_qwen2.revision_sha.encode() in after_first["team/qwen-chat/README.md"]

    # The Upload stage retried with the same saved model: the same objects, none rewritten.
    saved = tmp_path / "first" / "output" / "tiny-qwen2-chat"
    again = upload(saved, S3Destination(uri), uri=uri, name="tiny-qwen2-chat", s3=S3Settings.from_env(environ))
    assert again == first.result.output
    assert _objects(client, bucket) == after_first


def test_without_upload_an_s3_output_is_written_under_the_workdir_and_says_so(
    tiny_qwen2: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    data = write_chat_data(tmp_path / "data", train=16, validation=8)
    spec = chat_spec(tiny_qwen2.repo_id, data, output={"uri": "s3://models/team/qwen-chat"})
    spec["hyperparameters"]["nEpochs"] = 1
    manifest = write_manifest(tmp_path / "job.yaml", name="tiny-s3-local", spec=spec)

    run = kubetune_run(manifest, workdir=tmp_path / "work", hf_home=tiny_hf_home, environ=offline_env)

    assert run.returncode == 0, run.output
    local = tmp_path / "work" / "s3" / "models" / "team" / "qwen-chat"
    assert f"output s3://models/team/qwen-chat is written to {local}" in run.output
    assert (local / MANIFEST_NAME).is_file()
    assert (local / "model.safetensors").is_file()
