"""Helpers for the tests that checkpoint to an `s3://` location (moto's S3 server on loopback).

`empty_checkpoint_bucket` is behind the `s3_bucket` fixture (conftest.py); the rest point a job at
the store and check what its runs left there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubetune_trainer.contract import TrainerConfig

from .loopback import serve_s3_on_loopback

BUCKET = "checkpoints"
JOB_PREFIX = "runs/tiny/uid-1234"
"""Where the job `tiny` (uid-1234) keeps its checkpoints under the location `s3://checkpoints/runs`."""


@contextmanager
def empty_checkpoint_bucket() -> Iterator[tuple[dict[str, str], Any, str]]:
    """A moto S3 server on loopback with an empty bucket `checkpoints`: (AWS environ, boto3 client, bucket)."""
    import boto3  # type: ignore[import-untyped]  # here, not at import: conftest imports this module

    with serve_s3_on_loopback() as endpoint:
        environ = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        # moto's store is one per process: objects an earlier test left under the same keys are removed,
        # so each test starts from an empty bucket (a stale COMPLETE or MODEL.json would change what it sees).
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for stale in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=stale["Key"])
        yield environ, client, BUCKET


def on_s3(config: TrainerConfig, location: str, **runtime: Any) -> TrainerConfig:
    """`config` checkpointing to `location` (an `s3://` URI), with any other runtime settings changed."""
    return config.model_copy(
        update={"runtime": config.runtime.model_copy(update={"checkpoint_uri": location, **runtime})}
    )


def stored_keys(client: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}


def assert_checkpoints_complete_in_store(client: Any, bucket: str, keys: set[str], *, expected: set[str]) -> None:
    """Both checkpoints of the 16-step job (steps 8 and 16) hold `expected`, and each marker hashes every file."""
    for step in ("step-00000008", "step-00000016"):
        files = {k.removeprefix(f"{JOB_PREFIX}/{step}/") for k in keys if k.startswith(f"{JOB_PREFIX}/{step}/")}
        assert expected <= files
        marker = json.loads(client.get_object(Bucket=bucket, Key=f"{JOB_PREFIX}/{step}/COMPLETE")["Body"].read())
        assert set(marker["sha256"]) == files - {"COMPLETE"}


def delete_kept_model(client: Any, bucket: str, keys: set[str]) -> None:
    """Remove the saved model the run kept beside its checkpoints (a retry would upload it without training)."""
    saved = [k for k in keys if k.startswith(f"{JOB_PREFIX}/saved/")]
    assert f"{JOB_PREFIX}/saved/.kubetune-complete.json" in saved
    for key in saved:
        client.delete_object(Bucket=bucket, Key=key)
