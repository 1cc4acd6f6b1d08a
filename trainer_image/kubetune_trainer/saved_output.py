"""The saved model, kept beside the job's checkpoints, so a retry after Saving resumes at Upload.

An attempt that saved and verified its model and then failed to upload it (the hub answered 5xx,
the network dropped) must not train again: the next attempt finds `<job checkpoints>/saved/`,
complete and verified, and runs only the Upload stage. The copy is written as checkpoints are:
a staging directory, then a `SAVED` marker holding the model name and every file's sha256,
then a rename; a copy whose files do not hash to its marker is ignored (the attempt trains).

Kept only where checkpoints outlive pods on a filesystem (a path, `file://`, `pvc://`); under an
`s3://` location or with none, a retry saves again.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pydantic import Field

from .contract import WireModel
from .hashing import file_sha256

log = logging.getLogger(__name__)

SAVED_DIR = "saved"
MARKER = "SAVED"


class SavedMarker(WireModel):
    """What a kept model is: its output name and each file's sha256 (paths relative to the folder)."""

    model_name: str = Field(description="output.modelName the folder was saved as.")
    sha256: dict[str, str] = Field(description="Relative path -> sha256 of every file of the folder.")


def keep(folder: Path, *, job_dir: Path, name: str) -> Path:
    """Copy the verified output `folder` to `<job_dir>/saved/`, complete or not at all."""
    target = job_dir / SAVED_DIR
    staging = job_dir / f".{SAVED_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(folder, staging)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    marker = SavedMarker(model_name=name, sha256={str(p.relative_to(staging)): file_sha256(p) for p in files})
    (staging / MARKER).write_text(marker.model_dump_json(by_alias=True), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def find(job_dir: Path, *, name: str) -> Path | None:
    """The kept model of this job, verified against its marker; None when there is none to trust."""
    folder = job_dir / SAVED_DIR
    try:
        marker = SavedMarker.model_validate_json((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.model_name != name:
        log.warning("the kept model %s is %s, not %s: training again", folder, marker.model_name, name)
        return None
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MARKER}
    if present != set(marker.sha256):
        log.warning("the kept model %s lacks or adds files: training again", folder)
        return None
    for relative, expected in marker.sha256.items():
        if file_sha256(folder / relative) != expected:
            log.warning("the kept model's %s does not match its sha256: training again", relative)
            return None
    return folder
