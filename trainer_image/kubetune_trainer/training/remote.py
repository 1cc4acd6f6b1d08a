"""Checkpoints in an object store (`s3://`): written locally, copied out complete, fetched back to resume.

Each rank copies the files it wrote (its shards, its RNG states) from its own staging directory,
so nodes that share no filesystem each contribute their part. An object store has no rename, so
completeness is the COMPLETE marker alone: rank 0 uploads it after every rank's files are there,
and a checkpoint whose marker is not there is not listed as one. Fetching copies a marked
checkpoint (its `shards/` included) into a hidden local directory and renames it into the job's
local checkpoint directory; the local loader (`training.resume`) then checks
every file against the marker's hashes as for any other checkpoint, so an object that changed
or broke in the store is never loaded.

`MODEL.json` (`checkpoint_location.MODEL_FILE`, the repo and commit the checkpoints continue) sits
beside the `step-<N>` prefixes, as on a filesystem: one small object, put whole by a single PUT
(`S3Mirror.put_beside`), and fetched with the checkpoints into the local job directory, where a
job starting from them reads it back (`stages.train.check_same_model`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]

from ..errors import InfrastructureFailure
from ..storage import S3Settings
from .checkpoint import COMPLETE_FILE, STEP_PREFIX, checkpoint_dir
from .checkpoint_location import MODEL_FILE
from .resume import verify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Mirror:
    """Checkpoints copied to `remote` (`s3://bucket/prefix/<job>`): each rank its own files, rank 0 the marker last."""

    remote: str
    settings: S3Settings

    def put(self, directory: Path, names: Sequence[str], *, step_name: str) -> None:
        self._copy({name: directory / name for name in names}, target=f"{self.remote}/{step_name}", what=step_name)

    def put_beside(self, file: Path) -> None:
        """One small file (`MODEL.json`) beside the job's `step-<N>` prefixes: a single PUT, whole or absent."""
        self._copy({file.name: file}, target=self.remote, what=file.name)

    def _copy(self, files: dict[str, Path], *, target: str, what: str) -> None:
        """Each local file to `target/<its name>`."""
        try:
            fs = _filesystem(self.settings)
            for name, local in files.items():
                fs.put_file(str(local), f"{target}/{name}")
        except Exception as exc:  # s3fs and botocore raise many kinds; all mean the store failed us
            raise InfrastructureFailure(
                f"could not copy the checkpoint {what} to {target}: {type(exc).__name__}: {exc}",
                reason="CheckpointUploadFailed",
                hint="Check the bucket of checkpoint.uri exists and the pod's S3 credentials may write to it.",
            ) from exc


def fetch_checkpoint(local_job_dir: Path, *, remote: str, step: int | None, settings: S3Settings) -> None:
    """Bring the newest complete checkpoint under `remote` (or exactly `step`'s) into `local_job_dir`,
    and the job's `MODEL.json` where it has one.

    Nothing to fetch (no marked checkpoint there, or the named one missing) leaves the local
    directory as it is, for the loader to decide what that means.
    """
    try:
        fs = _filesystem(settings)
        _fetch_model_record(fs, remote, local_job_dir)
        marked = _marked_remote(fs, remote)
        candidates = [step] if step is not None else sorted(marked, reverse=True)
        for number in candidates:
            if number not in marked:
                continue
            local = checkpoint_dir(local_job_dir, number)
            if not (local / COMPLETE_FILE).is_file():
                _download(fs, marked[number], local)
            problem = verify(local, step=number)
            if problem is None:
                return
            log.warning("checkpoint %s/%s is skipped: %s", remote, local.name, problem)
    except Exception as exc:
        raise InfrastructureFailure(
            f"could not read the checkpoints under {remote}: {type(exc).__name__}: {exc}",
            reason="CheckpointDownloadFailed",
            hint="Check the bucket of checkpoint.uri exists and the pod's S3 credentials may read it.",
        ) from exc


def _filesystem(settings: S3Settings) -> Any:
    fs = fsspec.filesystem("s3", **settings.storage_options())
    fs.invalidate_cache()
    return fs


def _fetch_model_record(fs: Any, remote: str, local_job_dir: Path) -> None:
    """`<remote>/MODEL.json` into the local job directory (through a hidden name), where there is one."""
    key = f"{remote}/{MODEL_FILE}"
    if not fs.exists(key):
        return
    local_job_dir.mkdir(parents=True, exist_ok=True)
    staging = local_job_dir / f".{MODEL_FILE}.fetch"
    fs.get_file(key, str(staging))
    os.replace(staging, local_job_dir / MODEL_FILE)


def _marked_remote(fs: Any, remote: str) -> dict[int, str]:
    """step -> key prefix of every `step-<N>` under `remote` whose COMPLETE marker is there."""
    prefix = remote.removeprefix("s3://")
    if not fs.exists(prefix):
        return {}
    found: dict[int, str] = {}
    for key in fs.ls(prefix, detail=False):
        name = key.rstrip("/").rsplit("/", 1)[-1]
        number = name.removeprefix(STEP_PREFIX)
        if name.startswith(STEP_PREFIX) and number.isdigit() and fs.exists(f"{key}/{COMPLETE_FILE}"):
            found[int(number)] = key
    return found


def _download(fs: Any, key: str, local: Path) -> None:
    staging = local.parent / f".{local.name}.fetch"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    base = key.rstrip("/")
    names = sorted(k.removeprefix(base).lstrip("/") for k in fs.find(base))
    # The marker last, as it was written: a fetch cut short leaves a directory the loader ignores.
    for name in [n for n in names if n != COMPLETE_FILE] + [COMPLETE_FILE]:
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{base}/{name}", str(staging / name))
    if local.exists():
        shutil.rmtree(local)
    os.replace(staging, local)
