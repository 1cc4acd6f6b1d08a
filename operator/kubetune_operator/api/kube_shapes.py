"""Small Kubernetes shapes several API models share: a Secret key reference and a toleration."""

from __future__ import annotations

import enum

from pydantic import Field

from kubetune_trainer.contract import WireModel

from .fields import DnsSubdomain, SecretKey


class SecretKeyRef(WireModel):
    """A key in a Secret of the job's namespace. The operator never reads it; pods get it as env."""

    name: DnsSubdomain = Field(description="Name of the Secret, in the FineTuneJob's namespace.")
    key: SecretKey = Field(description="Key within the Secret.")


class TolerationOperator(enum.StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(enum.StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(WireModel):
    """A Kubernetes toleration, copied into trainer pods."""

    key: str | None = Field(None, max_length=316, description="Taint key; empty with Exists matches every taint.")
    operator: TolerationOperator = Field(TolerationOperator.EQUAL, description="Exists or Equal. Default Equal.")
    value: str | None = Field(None, max_length=63, description="Taint value, for Equal.")
    effect: TaintEffect | None = Field(None, description="NoSchedule, PreferNoSchedule or NoExecute; empty: all.")
    toleration_seconds: int | None = Field(None, ge=0, description="How long a NoExecute taint is tolerated.")
