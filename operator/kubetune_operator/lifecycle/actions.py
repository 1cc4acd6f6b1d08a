"""What the state machine asks the shell to do: create, delete, look again later.

Each action is idempotent on the cluster side: creates are create-if-absent (a 409 finds the
owned copy), deletes of absent objects succeed, so replaying a step does no harm.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kubetune_trainer.contract import WireModel


class CreatePreflight(WireModel):
    """Create the preflight's ConfigMap and Job (render.render_preflight) if absent."""

    kind: Literal["CreatePreflight"] = "CreatePreflight"


class DeletePreflight(WireModel):
    """Delete the preflight Job and its pod."""

    kind: Literal["DeletePreflight"] = "DeletePreflight"


class CreateAttempt(WireModel):
    """Create attempt `attempt`'s objects (render.render_attempt) if absent."""

    kind: Literal["CreateAttempt"] = "CreateAttempt"
    attempt: int = Field(ge=1, description="The attempt to create.")
    resume_from: str | None = Field(None, description="Checkpoint to resume from, `<job>:<step>`.")


class DeleteAttempt(WireModel):
    """Delete attempt `attempt`'s batch Job with its pods (background propagation): frees the GPUs."""

    kind: Literal["DeleteAttempt"] = "DeleteAttempt"
    attempt: int = Field(ge=1, description="The attempt whose Job goes.")


class DeleteFineTuneJob(WireModel):
    """Delete the FineTuneJob itself (ttlSecondsAfterFinished elapsed); owned children follow."""

    kind: Literal["DeleteFineTuneJob"] = "DeleteFineTuneJob"


class EnsureServing(WireModel):
    """Create spec.serve's objects unless they exist, and record them (or why not) in status.serving."""

    kind: Literal["EnsureServing"] = "EnsureServing"


class RequeueAfter(WireModel):
    """Reconcile again after `seconds`, even if nothing changes (a backoff, a deadline, a heartbeat)."""

    kind: Literal["RequeueAfter"] = "RequeueAfter"
    seconds: float = Field(ge=0.0, description="Seconds from now.")


Action = Annotated[
    CreatePreflight
    | DeletePreflight
    | CreateAttempt
    | DeleteAttempt
    | DeleteFineTuneJob
    | EnsureServing
    | RequeueAfter,
    Field(discriminator="kind"),
]
