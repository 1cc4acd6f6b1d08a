"""Upload: put the saved model at `output.uri`, complete or not at all (see `storage`).

Only rank 0 uploads; the other ranks have nothing to add.
"""

from __future__ import annotations

from huggingface_hub import HfApi

from ..context import RunContext
from ..contract import OutputSummary
from ..handoffs import SavedModel
from ..hub import HubSettings
from ..storage import HubDestination, S3Settings, destination_for, upload


def run(ctx: RunContext, saved: SavedModel | None) -> OutputSummary | None:
    """What reached `output.uri`; None on the ranks other than 0 (Saving hands them None: rank 0 saved)."""
    if not ctx.dist.is_main:
        return None
    if saved is None:
        raise RuntimeError("the Saving stage left no saved model to upload")
    config = ctx.config
    destination = destination_for(config.output.uri, pvc_mount_root=config.data.pvc_mount_root)
    token_env = config.model.token_env
    # One token serves reading the base model and writing the output repo, as with Together. The
    # hub settings are read as the download reads them (a Secret's trailing newline stripped,
    # HF_ENDPOINT for a self-hosted hub), so both stages talk to the same hub as the same user.
    token: str | None = None
    hub: HfApi | None = None
    if isinstance(destination, HubDestination):
        settings = HubSettings.from_env(ctx.environ, token_env=token_env)
        token = settings.token if isinstance(settings.token, str) else None
        hub = HfApi(endpoint=settings.endpoint)
    output = upload(
        saved.folder,
        destination,
        uri=config.output.uri,
        name=saved.name,
        s3=S3Settings.from_env(ctx.environ),
        hub=hub,
        hub_token=token,
        private=config.output.private,
    )
    ctx.journal.output = output
    ctx.reporter.note(f"uploaded {output.name}: {output.files} files, {output.bytes:,} bytes to {output.uri}")
    return output
