"""Constrained field types shared by the API models, each with the words users see when it is wrong.

A pattern is the one source of truth for both the pydantic check and the CRD schema; its
human explanation lives beside it in `ALLOWED`, so an error never shows a raw regex alone.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

ALLOWED: dict[str, str] = {}
"""pattern -> what it allows, in words, for error messages."""


def _pattern(regex: str, allowed: str) -> str:
    ALLOWED[regex] = allowed
    return regex


DNS_SUBDOMAIN = _pattern(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "a DNS subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
)
DNS_LABEL = _pattern(
    r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
    "a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, ending with a letter or digit",
)
LABEL_VALUE = _pattern(
    r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    "a label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
)
SECRET_KEY = _pattern(r"^[-._a-zA-Z0-9]+$", "a Secret key: letters, digits, '-', '_' and '.'")
HF_REPO_ID = _pattern(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$",
    "a Hugging Face repo id such as `org/name` (letters, digits, '-', '_', '.')",
)
GIT_REVISION = _pattern(
    r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
    "a commit sha, branch or tag, e.g. `main` or a 40-hex sha",
)
DATA_URI = _pattern(
    r"^((pvc|s3|https|file)://.+|hf://datasets/[^/]+/[^/]+/.+|[^:]+)$",
    "pvc://claim/path, s3://bucket/key, https://..., file:///path, hf://datasets/org/name/path, or a path",
)
OUTPUT_URI = _pattern(
    r"^((pvc|s3|file)://.+|hf://[^/]+/[^/]+|[^:]+)$",
    "pvc://claim/path, s3://bucket/prefix, hf://org/repo, file:///path, or a path",
)
CHECKPOINT_URI = _pattern(
    r"^((pvc|s3|file)://.+|[^:]+)$",
    "pvc://claim/path, s3://bucket/prefix, file:///path, or a path",
)
CHECKPOINT_REF = _pattern(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[0-9]+)?$",
    "a FineTuneJob name, optionally with `:<step>`, e.g. `my-job` or `my-job:400`",
)
SUFFIX = _pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "letters, digits, '-', '_' and '.', starting with a letter or digit")
HTTPS_URL = _pattern(r"^https?://[^\s/]+(/\S*)?$", "an http(s) URL such as https://wandb.example.com")
REGION = _pattern(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", "a region name such as us-east-1: letters, digits, '-' and '_'")
VERSION = _pattern(r"^[0-9]+(\.[0-9]+){0,2}$", "a version such as 5.23.0")
QUANTITY = _pattern(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
    "a Kubernetes quantity such as 8, 500m, 64Gi",
)
MAX_OR_POSITIVE = _pattern(r"^max$", "a positive integer or `max`")

DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
LabelValueName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_SUBDOMAIN)]
"""An object name that is also written as a label value (Kueue's queue-name label): 63 characters at most."""
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY)]
HfRepoId = Annotated[str, Field(min_length=1, max_length=96, pattern=HF_REPO_ID)]
GitRevision = Annotated[str, Field(min_length=1, max_length=255, pattern=GIT_REVISION)]
DataUri = Annotated[str, Field(min_length=1, max_length=2048, pattern=DATA_URI)]
OutputUri = Annotated[str, Field(min_length=1, max_length=2048, pattern=OUTPUT_URI)]
CheckpointUri = Annotated[str, Field(min_length=1, max_length=2048, pattern=CHECKPOINT_URI)]
CheckpointRef = Annotated[str, Field(min_length=1, max_length=80, pattern=CHECKPOINT_REF)]
Suffix = Annotated[str, Field(min_length=1, max_length=40, pattern=SUFFIX)]
Region = Annotated[str, Field(min_length=1, max_length=64, pattern=REGION)]
HttpUrl = Annotated[str, Field(min_length=1, max_length=2048, pattern=HTTPS_URL)]
Version = Annotated[str, Field(min_length=1, max_length=32, pattern=VERSION)]


def _int_or_string(extra: dict[str, Any]) -> WithJsonSchema:
    """The structural-schema shape of an int-or-string field (`x-kubernetes-int-or-string`)."""
    return WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}], **extra}
    )


Quantity = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=QUANTITY, max_length=64)],
    _int_or_string({"pattern": QUANTITY, "minimum": 0, "maxLength": 64}),
]
"""A Kubernetes resource quantity: an integer or a string such as `64Gi`."""

BatchSize = Annotated[
    Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=MAX_OR_POSITIVE)],
    _int_or_string({"pattern": MAX_OR_POSITIVE, "minimum": 1, "maxLength": 3}),
]
"""A positive integer, or `max` for the template's largest batch."""
