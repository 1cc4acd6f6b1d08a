"""Download glue for one checkpoint step: the base snapshot the job trained, then the trainer's export.

Needs the trainer's ML stack (`kubetune[trainer]`) on the machine that downloads, and the base
model from the Hugging Face Hub (or its local cache: HF_HOME, HF_HUB_OFFLINE=1); a token for a
private or gated base is read from HF_TOKEN, as huggingface_hub does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .download import DownloadError

Json = dict[str, Any]


def step_folder_name(step: int) -> str:
    from kubetune_trainer.checkpoint_export import step_folder_name as name  # noqa: PLC0415 - the ML stack

    return name(step)


def export_checkpoint(job: Json, checkpoint: Path, target: Path, *, merged: bool) -> None:
    """`checkpoint` (a step folder fetched from the job's checkpoint location) -> a loadable folder `target`."""
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415

        from kubetune_trainer.checkpoint_export import export_checkpoint as export  # noqa: PLC0415
        from kubetune_trainer.contract import LoraConfig  # noqa: PLC0415
    except ImportError as missing:
        raise DownloadError(
            f"exporting a checkpoint needs the trainer's ML stack ({missing.name} is missing): "
            "pip install 'kubetune[trainer]'"
        ) from None
    resolved = job.get("status", {}).get("resolved") or {}
    repo, sha = resolved.get("modelRepo"), resolved.get("revisionSha") or resolved.get("revision")
    if not repo:
        raise DownloadError("the job records no resolved model (status.resolved.modelRepo)")
    base = Path(snapshot_download(repo_id=repo, revision=sha))
    lora = LoraConfig.parse(resolved["lora"]) if resolved.get("lora") else None
    export(checkpoint, target, base_snapshot=base, base_repo=repo, base_revision=sha, lora=lora, merged=merged)
