"""Whole custom resources as manifests hold them: apiVersion, kind, metadata, spec (and status)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from kubetune_trainer.contract import WireModel

from .fields import DnsLabel, DnsSubdomain
from .names import API_VERSION
from .spec import FineTuneJobSpec
from .status import FineTuneJobStatus
from .template import BaseModelTemplateSpec


class _Metadata(WireModel):
    """The part of metadata kubetune reads; the API server owns the rest."""

    model_config = ConfigDict(extra="ignore")

    namespace: str | None = Field(None, min_length=1, max_length=63, description="Namespace.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")


class FineTuneJobMetadata(_Metadata):
    name: DnsLabel = Field(
        description="Job name: a DNS-1035 label (lowercase letters, digits, '-'), as pod and Service names need."
    )


class TemplateMetadata(_Metadata):
    name: DnsSubdomain = Field(description="Template name: a DNS subdomain.")


class FineTuneJob(WireModel):
    """A FineTuneJob manifest."""

    api_version: Literal["kubetune.dev/v1alpha1"] = Field(description=f"Always {API_VERSION}.")
    kind: Literal["FineTuneJob"] = Field(description="Always FineTuneJob.")
    metadata: FineTuneJobMetadata = Field(description="Name and namespace.")
    spec: FineTuneJobSpec = Field(description="What to train.")
    status: FineTuneJobStatus | None = Field(None, description="What happened.")


class BaseModelTemplate(WireModel):
    """A BaseModelTemplate manifest."""

    api_version: Literal["kubetune.dev/v1alpha1"] = Field(description=f"Always {API_VERSION}.")
    kind: Literal["BaseModelTemplate"] = Field(description="Always BaseModelTemplate.")
    metadata: TemplateMetadata = Field(description="Name.")
    spec: BaseModelTemplateSpec = Field(description="The template.")

    @property
    def name(self) -> str:
        return self.metadata.name

    def answers_to(self, reference: str) -> bool:
        """Whether `model: <reference>` in a job names this template (its name or an alias)."""
        return reference == self.metadata.name or reference in self.spec.aliases
