"""Under an `s3://` checkpoint location a job's checkpoints record the model they continue too:
`MODEL.json` (repo and commit) is put beside its `step-<N>` prefixes, and a fromCheckpoint job on a
fresh machine (an empty work directory) fetches it with the checkpoint and refuses another model,
as on a filesystem (test_from_checkpoint_reads_back_the_model_it_continues.py).

Runs against a moto S3 server on loopback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kubetune_trainer.contract import ErrorClass, JobIdentity, Outcome, TrainerConfig
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import resumable_job, run_in_process
from .s3_checkpoints import BUCKET, on_s3

LOCATION = f"s3://{BUCKET}/runs"
SOURCE_RECORD = "runs/tiny/uid-1234/MODEL.json"


def _continuation(tiny_llama: TinyModel, *, hf_home: Path, work_dir: Path, uid: str) -> TrainerConfig:
    """A job `follow-up` starting from `tiny`'s newest checkpoint, as the operator renders fromCheckpoint."""
    config = resumable_job(tiny_llama, hf_home=hf_home, work_dir=work_dir, checkpoints=work_dir)
    config = on_s3(config, LOCATION, resume_from="tiny@uid-1234", from_checkpoint="tiny@uid-1234")
    return config.model_copy(update={"job": JobIdentity(namespace="ml", name="follow-up", uid=uid)})


def test_from_checkpoint_on_s3_reads_back_the_source_model_and_refuses_another(
    s3_bucket: tuple[dict[str, str], Any, str],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    aws, client, _ = s3_bucket
    environ = {**offline_env, **aws}
    source = on_s3(
        resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "src", checkpoints=tmp_path), LOCATION
    )

    trained, _ = run_in_process(source, offline_env=environ)

    assert trained.outcome is Outcome.SUCCEEDED, trained.error
    record = json.loads(client.get_object(Bucket=BUCKET, Key=SOURCE_RECORD)["Body"].read())
    assert record["repo"] == tiny_llama.repo_id
    assert re.fullmatch(r"[0-9a-f]{40}", record["revisionSha"])  # the commit the snapshot resolved to

    # The same model: the continuation (a fresh work directory) starts from tiny's step 16.
    follow_up = _continuation(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "follow-up", uid="uid-5678")

    continued, losses = run_in_process(follow_up, offline_env=environ)

    assert continued.outcome is Outcome.SUCCEEDED, continued.error
    assert continued.resumed_from_step == 16
    assert min(losses) == 1  # a new run from the source's weights: its own steps from 1
    assert json.loads((tmp_path / "follow-up" / "checkpoints" / "tiny" / "uid-1234" / "MODEL.json").read_text()) == (
        record
    )
    card = (Path(follow_up.output.uri) / "README.md").read_text(encoding="utf-8")
    assert "| continued from | job `tiny`, uid `uid-1234`, step 16 (fromCheckpoint)" in card
    # The continuation records its own model beside its own checkpoints, for a job that starts from it.
    assert "runs/follow-up/uid-5678/MODEL.json" in {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}

    # The source trained another model: a continuation on this one (another FineTuneJob, whose own
    # directory is empty) is refused before any step.
    other = {"repo": "acme/other-model", "revisionSha": "3" * 40}
    client.put_object(Bucket=BUCKET, Key=SOURCE_RECORD, Body=json.dumps(other).encode())
    again = _continuation(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "other", uid="uid-9999")

    refused, refused_losses = run_in_process(again, offline_env=environ)

    assert refused.outcome is Outcome.FAILED
    assert refused.error is not None
    assert (refused.error.error_class, refused.error.reason) == (ErrorClass.INVALID_INPUT, "CheckpointModelMismatch")
    assert f"acme/other-model@{'3' * 40}" in refused.error.message
    assert f"this job loads {tiny_llama.repo_id}@{record['revisionSha']}" in refused.error.message
    assert refused_losses == {}
