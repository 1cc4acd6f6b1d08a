"""What a set of rendered RBAC objects lets the operator's ServiceAccount do, evaluated as Kubernetes does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .chart import Rendered

Rule = dict[str, Any]


@dataclass(frozen=True)
class Access:
    """One API request as RBAC sees it (resource may carry a subresource: finetunejobs/status)."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None


def rule_allows(rule: Rule, access: Access) -> bool:
    names = rule.get("resourceNames") or []
    return (
        access.group in rule.get("apiGroups", [])
        and access.resource in rule.get("resources", [])
        and access.verb in rule.get("verbs", [])
        and (not names or access.name in names)
    )


@dataclass(frozen=True)
class Grants:
    """The operator's rules: cluster-wide ones, and per-namespace ones from Roles."""

    cluster: tuple[Rule, ...]
    by_namespace: dict[str, tuple[Rule, ...]]

    def allows(self, access: Access) -> bool:
        local = self.by_namespace.get(access.namespace or "", ())
        return any(rule_allows(rule, access) for rule in (*self.cluster, *local))


def operator_grants(objects: list[Rendered], *, account: str, namespace: str) -> Grants:
    """Follow the bindings whose subject is the operator's ServiceAccount to the rules they grant."""
    roles = {(r.obj["metadata"].get("namespace"), r.kind, r.name): r.obj for r in objects if r.kind.endswith("Role")}
    cluster: list[Rule] = []
    by_namespace: dict[str, tuple[Rule, ...]] = {}
    for binding in (r.obj for r in objects if r.kind in ("ClusterRoleBinding", "RoleBinding")):
        subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        if subject not in binding["subjects"]:
            continue
        bound_in = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(bound_in if ref["kind"] == "Role" else None, ref["kind"], ref["name"])]
        if binding["kind"] == "ClusterRoleBinding":
            cluster += role["rules"]
        else:
            by_namespace[bound_in] = (*by_namespace.get(bound_in, ()), *role["rules"])
    return Grants(cluster=tuple(cluster), by_namespace=by_namespace)


def all_rules(objects: list[Rendered]) -> list[tuple[str, Rule]]:
    """Every rule of every Role and ClusterRole rendered, with where it comes from."""
    return [
        (f"{r.kind}/{r.name}", rule) for r in objects if r.kind in ("Role", "ClusterRole") for rule in r.obj["rules"]
    ]
