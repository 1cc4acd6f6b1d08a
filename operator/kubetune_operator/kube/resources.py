"""The API resources the operator reads and writes, and their URL paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.names import GROUP, VERSION


@dataclass(frozen=True)
class ApiResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, *, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [root]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource is not None:
                parts.append(subresource)
        return "/".join(parts)


FINETUNEJOBS = ApiResource(GROUP, VERSION, "finetunejobs", "FineTuneJob")
BASEMODELTEMPLATES = ApiResource(GROUP, VERSION, "basemodeltemplates", "BaseModelTemplate", namespaced=False)
JOBS = ApiResource("batch", "v1", "jobs", "Job")
PODS = ApiResource("", "v1", "pods", "Pod")
CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap")
SERVICES = ApiResource("", "v1", "services", "Service")
SERVICEACCOUNTS = ApiResource("", "v1", "serviceaccounts", "ServiceAccount")
EVENTS = ApiResource("", "v1", "events", "Event")
ROLES = ApiResource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLEBINDINGS = ApiResource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
DEPLOYMENTS = ApiResource("apps", "v1", "deployments", "Deployment")
INFERENCESERVICES = ApiResource("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")

_BY_KIND = {
    (resource.api_version, resource.kind): resource
    for resource in (
        FINETUNEJOBS,
        JOBS,
        PODS,
        CONFIGMAPS,
        SERVICES,
        SERVICEACCOUNTS,
        EVENTS,
        ROLES,
        ROLEBINDINGS,
        DEPLOYMENTS,
        INFERENCESERVICES,
    )
}


def resource_of(manifest: dict[str, Any]) -> ApiResource:
    """The resource a rendered manifest is created in, from its apiVersion and kind."""
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    if key not in _BY_KIND:
        raise ValueError(f"the operator does not create {key[1]} objects of {key[0]}")
    return _BY_KIND[key]
