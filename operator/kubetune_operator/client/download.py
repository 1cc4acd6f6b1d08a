"""Copying a trained model (or a checkpoint folder) from where the job stored it to a local folder.

Locations: a path or `file://`; `pvc://claim/path`, read where the claim is mounted on this
machine (`pvc_root/<claim>/...`: an NFS or CSI mount, or the sandbox's volumes); `s3://` through
fsspec (the `trainer` extra brings s3fs); `hf://org/repo` through huggingface_hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
)
"""Files beside an adapter that loading it with its tokenizer needs (a merged output keeps them at its top)."""


class DownloadError(RuntimeError):
    """The files cannot be fetched; the message says where they are and what to do."""


def fetch_folder(location: str, target: Path, *, pvc_root: Path | None) -> int:
    """Copy the folder at `location` to `target` (created); the bytes written."""
    target.mkdir(parents=True, exist_ok=True)
    if location.startswith("s3://"):
        return _from_s3(location, target)
    if location.startswith("hf://"):
        return _from_hub(location.removeprefix("hf://"), target)
    source = local_path(location, pvc_root=pvc_root)
    if not source.is_dir():
        raise DownloadError(f"{location} is not there (looked at {source})")
    shutil.copytree(source, target, dirs_exist_ok=True)
    return folder_bytes(target)


def local_path(location: str, *, pvc_root: Path | None) -> Path:
    if location.startswith("pvc://"):
        claim_and_path = location.removeprefix("pvc://")
        if pvc_root is None:
            raise DownloadError(
                f"{location} is on a PersistentVolumeClaim: mount the claim on this machine and pass "
                "pvc_root= (--pvc-root, or KUBETUNE_PVC_ROOT) as the folder holding one folder per claim, "
                "or copy it out with `kubectl cp` from a pod that mounts it"
            )
        return pvc_root / claim_and_path
    return Path(location.removeprefix("file://"))


def copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and not (target / name).exists():
            shutil.copy2(source / name, target / name)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _from_s3(location: str, target: Path) -> int:
    try:
        import fsspec  # type: ignore[import-untyped]  # noqa: PLC0415 - only s3:// needs it
    except ImportError:
        raise DownloadError(f"{location}: s3:// downloads need s3fs: pip install 'kubetune[trainer]'") from None
    fs = fsspec.filesystem("s3")
    fs.get(location.rstrip("/") + "/", str(target), recursive=True)
    return folder_bytes(target)


def _from_hub(repo: str, target: Path) -> int:
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415 - optional
    except ImportError:
        raise DownloadError(f"hf://{repo}: Hugging Face downloads need huggingface_hub") from None
    snapshot_download(repo_id=repo, local_dir=str(target))
    return folder_bytes(target)
