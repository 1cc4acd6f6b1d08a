"""An `s3://` checkpoint location: checkpoints are copied to the store complete, and a retry on a
fresh machine (an empty work directory) fetches the one it names and resumes from it.

Runs against a moto S3 server on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from kubetune_trainer.contract import Outcome
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import resumable_job, run_in_process


@pytest.fixture
def s3_bucket(tmp_path: Path) -> Iterator[tuple[dict[str, str], Any, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    environ = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3", endpoint_url=environ["AWS_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    client.create_bucket(Bucket="checkpoints")
    # moto's store is one per process: objects an earlier test left under the same keys are removed,
    # so each test starts from an empty bucket (a stale COMPLETE or MODEL.json would change what it sees).
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="checkpoints"):
        for stale in page.get("Contents", []):
            client.delete_object(Bucket="checkpoints", Key=stale["Key"])
    try:
        yield environ, client, "checkpoints"
    finally:
        server.stop()


def test_checkpoints_go_to_s3_complete_and_a_fresh_retry_resumes_from_there(
    s3_bucket: tuple[dict[str, str], Any, str],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    aws, client, bucket = s3_bucket
    environ = {**offline_env, **aws}
    first = resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=tmp_path)
    location = {"checkpoint_uri": f"s3://{bucket}/runs"}
    first = first.model_copy(update={"runtime": first.runtime.model_copy(update=location)})

    result, _ = run_in_process(first, offline_env=environ)

    assert result.outcome is Outcome.SUCCEEDED, result.error
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    for step in ("step-00000008", "step-00000016"):
        files = {
            k.removeprefix(f"runs/tiny/uid-1234/{step}/") for k in keys if k.startswith(f"runs/tiny/uid-1234/{step}/")
        }
        shards = {"shards/.metadata", "shards/__0_0.distcp"}
        assert {"COMPLETE", "scheduler.pt", "rng-0.pt", "state.json", *shards} <= files
        marker = json.loads(client.get_object(Bucket=bucket, Key=f"runs/tiny/uid-1234/{step}/COMPLETE")["Body"].read())
        assert set(marker["sha256"]) == files - {"COMPLETE"}

    # The first run kept its saved model there too, which a retry would upload without training
    # (test_retry_after_saving_resumes_at_upload_from_s3.py): removed, so that this retry resumes.
    assert "runs/tiny/uid-1234/saved/.kubetune-complete.json" in keys
    for key in [k for k in keys if k.startswith("runs/tiny/uid-1234/saved/")]:
        client.delete_object(Bucket=bucket, Key=key)
    retry = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "retry", checkpoints=tmp_path, resume_from="tiny:8"
    )
    retry = retry.model_copy(update={"runtime": retry.runtime.model_copy(update=location)})

    resumed, losses = run_in_process(retry, offline_env=environ)

    assert resumed.outcome is Outcome.SUCCEEDED, resumed.error
    assert resumed.resumed_from_step == 8
    assert sorted(losses) == list(range(9, 17))
