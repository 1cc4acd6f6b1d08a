"""Publish a local folder into the Hugging Face hub cache layout, as if it had been downloaded.

huggingface_hub has no import-into-cache API, so tests, the demo and `kubetune tiny-model`
write the layout it reads themselves:

    <hub_cache>/models--org--name/blobs/<sha256 of the file>
    <hub_cache>/models--org--name/snapshots/<commit>/<path>   -> ../../blobs/<sha256> (relative symlink)
    <hub_cache>/models--org--name/refs/<revision>             the 40-hex commit, no trailing newline

A trailing newline in a refs file makes `snapshot_download` fail offline with
LocalEntryNotFoundError, hence the exact writes below.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

RepoType = Literal["model", "dataset"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class CachedSnapshot:
    """A repo revision present in the cache: what `snapshot_download` would return offline."""

    repo_id: str
    revision_sha: str
    snapshot_path: Path


def check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hugging Face repo id of the form ORG/NAME")
    return repo_id


def repo_folder(hub_cache: Path, repo_id: str, *, repo_type: RepoType = "model") -> Path:
    """`<hub_cache>/models--org--name`, the folder huggingface_hub keeps one repo in."""
    prefix = "models" if repo_type == "model" else "datasets"
    return hub_cache / f"{prefix}--{check_repo_id(repo_id).replace('/', '--')}"


def content_commit(source_dir: Path) -> str:
    """A deterministic 40-hex commit id for a folder: the same files always give the same commit."""
    digest = hashlib.sha1(usedforsecurity=False)
    for path in _files(source_dir):
        digest.update(path.relative_to(source_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def publish_folder(
    source_dir: Path,
    *,
    repo_id: str,
    hub_cache: Path,
    revisions: tuple[str, ...] = ("main",),
    commit: str | None = None,
    repo_type: RepoType = "model",
) -> CachedSnapshot:
    """Copy `source_dir` into the cache as one commit of `repo_id`, with a refs file per revision name."""
    commit = commit or content_commit(source_dir)
    if not _COMMIT.match(commit):
        raise ValueError(f"commit {commit!r} must be 40 lowercase hex digits")
    repo = repo_folder(hub_cache, repo_id, repo_type=repo_type)
    snapshot = repo / "snapshots" / commit
    blobs = repo / "blobs"
    refs = repo / "refs"
    for folder in (snapshot, blobs, refs):
        folder.mkdir(parents=True, exist_ok=True)
    for path in _files(source_dir):
        data = path.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(source_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for revision in revisions:
        ref = refs / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_bytes(commit.encode())  # no trailing newline: see the module docstring
    return CachedSnapshot(repo_id=repo_id, revision_sha=commit, snapshot_path=snapshot)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
