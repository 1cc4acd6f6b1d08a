"""The only code that talks to the Kubernetes API: an aiohttp client, idempotent children, Events.

It never reads Secrets: trainer pods get the HF token and the W&B key as env from secretKeyRef.
"""

from .children import ChildOutcome, ForeignOwner, ensure_child
from .client import USER_AGENT, ApiError, KubeClient
from .connection import Connection
from .events import ObjectRef, post_event
from .resources import (
    BASEMODELTEMPLATES,
    CONFIGMAPS,
    EVENTS,
    FINETUNEJOBS,
    JOBS,
    PODS,
    ApiResource,
    resource_of,
)
from .serving_objects import ensure_objects

__all__ = [
    "BASEMODELTEMPLATES",
    "CONFIGMAPS",
    "EVENTS",
    "FINETUNEJOBS",
    "JOBS",
    "PODS",
    "USER_AGENT",
    "ApiError",
    "ApiResource",
    "ChildOutcome",
    "Connection",
    "ForeignOwner",
    "KubeClient",
    "ObjectRef",
    "ensure_child",
    "ensure_objects",
    "post_event",
    "resource_of",
]
