"""What the sandbox's kubelet reads for a pod, and the error a container that cannot start waits with.

Shared by the pod plan (`pod_plan.py`), the container env (`pod_env.py`) and the kubelet
(`pod_runner.py`). Secret values appear in no repr.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]

CONFIG_ERROR = "CreateContainerConfigError"
VOLUME_ERROR = "ContainerCreating"
"""A volume that cannot be set up keeps the container waiting, as FailedMount does."""
LOOPBACK = "127.0.0.1"
NODE_NAME = "kubetune-sandbox"


class PodPlanError(Exception):
    """The container cannot start; `reason` and `message` are what the kubelet writes in its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ApiEndpoint:
    """How pods reach the API server: KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount files."""

    host: str
    port: int
    ca_pem: bytes | None = field(default=None, repr=False)
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Host:
    """The machine playing the node."""

    interpreter: Path
    """`python` in a container runs this interpreter; `torchrun` and other tools come from its bin dir first."""
    endpoint: ApiEndpoint
    node_name: str = NODE_NAME


@dataclass(frozen=True)
class PodInputs:
    """What the kubelet reads from the API for one pod: its namespace's Secrets and ConfigMaps, every Service."""

    secrets: Mapping[str, JsonObject] = field(default_factory=dict, repr=False)
    config_maps: Mapping[str, JsonObject] = field(default_factory=dict)
    services: Collection[tuple[str, str]] = ()
    """(namespace, name) of every Service."""


def contents(source: JsonObject, *, encoded: bool) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys as bytes (Secret `data` and `binaryData` are base64)."""
    found = {key: _decode(value, key) for key, value in (source.get("binaryData") or {}).items()}
    for key, value in (source.get("data") or {}).items():
        found[key] = _decode(value, key) if encoded else str(value).encode()
    # The API server folds a Secret's stringData into data; the emulator keeps it as sent.
    found.update({key: str(value).encode() for key, value in (source.get("stringData") or {}).items()})
    return found


def _decode(value: object, key: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except binascii.Error:
        raise PodPlanError(CONFIG_ERROR, f"key {key} does not hold base64 data") from None
