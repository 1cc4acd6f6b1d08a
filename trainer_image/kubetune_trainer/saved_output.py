"""The saved model, kept beside the job's checkpoints, so a retry after Saving resumes at Upload.

An attempt that saved and verified its model and then failed to upload it (the hub answered 5xx,
the network dropped) must not train again: the next attempt finds `<job checkpoints>/saved/`,
complete and verified, and runs only the Upload stage. The copy is keyed as the checkpoints are
(`<root>/<job>/<uid>/saved`), so a job re-created under the same name never sees it. It is
complete or absent, as checkpoints are:

    saved/model/   the output folder, exactly as Saving verified it (what the retry uploads)
    saved/SAVED    the model name and every file's sha256 (paths relative to model/)

- on a filesystem (a path, `file://`, `pvc://`): written into a staging directory, then renamed;
- under an `s3://` location, which has no rename: put as an `s3://` upload puts a model
  (`storage.put_s3_folder`), the manifest `.kubetune-complete.json` with every object's sha256
  written last. The next attempt, on any machine, fetches a copy whose manifest is there into
  its work directory and checks every file against it (`storage.fetch_s3_folder`).

A copy whose marker or manifest is missing (a keep cut short), whose files do not hash to it, or
that was saved under another model name is ignored: the attempt trains. Rank 0 alone checks (and
fetches) the copy and every rank follows its answer, so all ranks train or none does. Without a
checkpoint location the work directory does not outlive the pod, and a retry saves again.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from pydantic import Field

from .context import DistInfo
from .contract import WireModel
from .hashing import file_sha256
from .storage import MANIFEST_NAME, S3Settings, fetch_s3_folder, manifest_of, put_s3_folder
from .training.checkpoint_location import CheckpointPlace
from .training.distributed import all_reduce_sum, init_process_group, pick_device

log = logging.getLogger(__name__)

SAVED_DIR = "saved"
MODEL_DIR = "model"
MARKER = "SAVED"


class SavedMarker(WireModel):
    """What a kept model is: its output name and each file's sha256 (paths relative to the folder)."""

    model_name: str = Field(description="output.modelName the folder was saved as.")
    sha256: dict[str, str] = Field(description="Relative path -> sha256 of every file of the folder.")


def keep(folder: Path, *, place: CheckpointPlace, name: str, s3: S3Settings) -> None:
    """Keep the verified output `folder` as this job's `saved/`, complete or not at all.

    Errors are the filesystem's or the store's own: the caller decides what a failed keep costs.
    """
    files = manifest_of(folder)
    marker = SavedMarker(model_name=name, sha256={path: entry.sha256 for path, entry in files.files.items()})
    if place.remote is not None:
        extra = {MARKER: marker.model_dump_json(by_alias=True).encode()}
        put_s3_folder(folder, f"{place.remote}/{SAVED_DIR}", files=files, under=MODEL_DIR, extra=extra, settings=s3)
        return
    target = place.local / SAVED_DIR
    staging = place.local / f".{SAVED_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(folder, staging / MODEL_DIR, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    (staging / MARKER).write_text(marker.model_dump_json(by_alias=True), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def find(place: CheckpointPlace, *, name: str, dist_info: DistInfo, s3: S3Settings) -> Path | None:
    """The kept model of this job, verified by rank 0, the same answer on every rank; None: train.

    Only rank 0 uploads: the other ranks get the path rank 0 holds it at, which they never read.
    """
    found = _trusted(place, name=name, s3=s3) if dist_info.is_main else None
    if not dist_info.distributed:
        return found
    # Before Initialization: join the process group now (Initialization finds it joined), so that
    # every rank trains, or none does.
    init_process_group(dist_info, device=pick_device(dist_info))
    verdict = torch.tensor([1.0 if found is not None else 0.0], dtype=torch.float64)
    if float(all_reduce_sum(verdict)[0]) == 0:
        return None
    return found if found is not None else place.local / SAVED_DIR / MODEL_DIR


def _trusted(place: CheckpointPlace, *, name: str, s3: S3Settings) -> Path | None:
    """`saved/model` when its marker names `name` and its files hash to the marker (rank 0 only)."""
    folder = place.local / SAVED_DIR
    if place.remote is None:
        return _verified(folder, name=name)
    remote = f"{place.remote}/{SAVED_DIR}"
    try:
        fetched = fetch_s3_folder(remote, folder, settings=s3)
    except Exception as exc:  # s3fs and botocore raise many kinds; without the copy the attempt trains
        log.warning("could not read the kept model under %s (%s: %s): training again", remote, type(exc).__name__, exc)
        return None
    if fetched is None:
        return None
    # The fetch checked every file against the manifest: the marker needs only to agree with it.
    marker = _marker(folder)
    inside = f"{MODEL_DIR}/"
    hashes = {path.removeprefix(inside): e.sha256 for path, e in fetched.files.items() if path.startswith(inside)}
    if marker is None or marker.sha256 != hashes:
        log.warning("the kept model under %s has no marker matching its files: training again", remote)
        return None
    return folder / MODEL_DIR if _named(marker, folder=folder, name=name) else None


def _verified(folder: Path, *, name: str) -> Path | None:
    marker = _marker(folder)
    if marker is None or not _named(marker, folder=folder, name=name):
        return None
    model = folder / MODEL_DIR
    # An upload to the Hub adds its manifest to the folder it uploads; manifests never list themselves.
    present = {p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}
    if present != set(marker.sha256):
        log.warning("the kept model %s lacks or adds files: training again", model)
        return None
    for relative, expected in marker.sha256.items():
        if file_sha256(model / relative) != expected:
            log.warning("the kept model's %s does not match its sha256: training again", relative)
            return None
    return model


def _marker(folder: Path) -> SavedMarker | None:
    try:
        return SavedMarker.model_validate_json((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _named(marker: SavedMarker, *, folder: Path, name: str) -> bool:
    if marker.model_name != name:
        log.warning("the kept model %s is %s, not %s: training again", folder, marker.model_name, name)
        return False
    return True
