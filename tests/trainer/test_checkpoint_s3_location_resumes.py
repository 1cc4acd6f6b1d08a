"""An `s3://` checkpoint location: checkpoints are copied to the store complete, and a retry on a
fresh machine (an empty work directory) fetches the one it names and resumes from it.

Runs against a moto S3 server on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune_trainer.contract import Outcome
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import resumable_job, run_in_process
from .s3_checkpoints import assert_checkpoints_complete_in_store, delete_kept_model, on_s3, stored_keys


def test_checkpoints_go_to_s3_complete_and_a_fresh_retry_resumes_from_there(
    s3_bucket: tuple[dict[str, str], Any, str],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    aws, client, bucket = s3_bucket
    environ = {**offline_env, **aws}
    location = f"s3://{bucket}/runs"
    first = on_s3(
        resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=tmp_path), location
    )

    result, _ = run_in_process(first, offline_env=environ)

    assert result.outcome is Outcome.SUCCEEDED, result.error
    keys = stored_keys(client, bucket)
    shards = {"shards/.metadata", "shards/__0_0.distcp"}
    assert_checkpoints_complete_in_store(
        client, bucket, keys, expected={"COMPLETE", "scheduler.pt", "rng-0.pt", "state.json", *shards}
    )

    # The first run kept its saved model there too, which a retry would upload without training
    # (test_retry_after_saving_resumes_at_upload_from_s3.py): removed, so that this retry resumes.
    delete_kept_model(client, bucket, keys)
    retry = on_s3(
        resumable_job(
            tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "retry", checkpoints=tmp_path, resume_from="tiny:8"
        ),
        location,
    )

    resumed, losses = run_in_process(retry, offline_env=environ)

    assert resumed.outcome is Outcome.SUCCEEDED, resumed.error
    assert resumed.resumed_from_step == 8
    assert sorted(losses) == list(range(9, 17))
