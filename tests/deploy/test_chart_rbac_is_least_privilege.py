"""The operator's RBAC: no wildcards, no Secrets, no escalate/bind/impersonate, and enough to create
each job's Role without tripping Kubernetes' privilege-escalation check."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_operator.render.labels import JobRef
from kubetune_operator.render.rbac import trainer_rbac

from .chart import NAMESPACE, RELEASE, VARIANTS, WATCHED, Rendered, render
from .rbac import Access, all_rules, operator_grants

RENDERED = {name: render(values) for name, values in VARIANTS.items()}
FORBIDDEN_VERBS = {"escalate", "bind", "impersonate"}
SECRET_READS = {"get", "list", "watch"}


def _grants(objects: list[Rendered]) -> Any:
    return operator_grants(objects, account=RELEASE, namespace=NAMESPACE)


def _job_role_rules(namespace: str) -> list[dict[str, Any]]:
    (role,) = (o for o in trainer_rbac(JobRef(namespace=namespace, name="chat", uid="u-1")) if o["kind"] == "Role")
    rules: list[dict[str, Any]] = role["rules"]
    return rules


@pytest.mark.parametrize("variant", RENDERED)
def test_no_wildcards_no_secrets_no_escalation_verbs(variant: str) -> None:
    rules = all_rules(RENDERED[variant])
    assert rules
    problems = []
    for where, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            if "*" in rule.get(field, []) or any("*" in item for item in rule.get(field, [])):
                problems.append(f"{where}: wildcard in {field}")
        if "secrets" in rule.get("resources", []) and SECRET_READS & set(rule["verbs"]):
            problems.append(f"{where}: reads Secrets")
        if FORBIDDEN_VERBS & set(rule["verbs"]):
            problems.append(f"{where}: {sorted(FORBIDDEN_VERBS & set(rule['verbs']))}")
    assert problems == []


@pytest.mark.parametrize(
    ("variant", "job_namespaces"), [("defaults", ["default", "ml"]), ("all-on-namespaced", list(WATCHED))]
)
def test_operator_holds_every_right_the_per_job_role_grants(variant: str, job_namespaces: list[str]) -> None:
    """Kubernetes refuses to create a Role granting rights its creator lacks (unless it may `escalate`)."""
    grants = _grants(RENDERED[variant])
    for namespace in job_namespaces:
        for rule in _job_role_rules(namespace):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames", [None]):
                            access = Access(verb, group, resource, namespace=namespace, name=name)
                            assert grants.allows(access), access


def test_watch_namespaces_gives_no_namespaced_rights_elsewhere() -> None:
    grants = _grants(RENDERED["all-on-namespaced"])
    assert set(grants.by_namespace) == set(WATCHED)
    assert not grants.allows(Access("create", "batch", "jobs", namespace="kube-system"))
    assert not grants.allows(Access("patch", "kubetune.dev", "finetunejobs/status", namespace="default", name="x"))
    assert grants.allows(Access("list", "kubetune.dev", "basemodeltemplates"))
    assert grants.allows(Access("watch", "", "namespaces")), "kopf expands namespace names"


def test_the_operator_creates_and_owns_what_it_renders() -> None:
    """Every kind the operator's render package creates can be created, read back and deleted."""
    grants = _grants(RENDERED["defaults"])
    kinds = [("", "configmaps"), ("", "services"), ("", "serviceaccounts"), ("batch", "jobs")]
    kinds += [("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings")]
    for group, resource in kinds:
        for verb in ("create", "get", "patch", "delete"):
            assert grants.allows(Access(verb, group, resource, namespace="default")), (verb, resource)
    assert not grants.allows(Access("create", "", "pods", namespace="default")), "pods come from Jobs"


def test_peering_rights_only_with_replicas() -> None:
    cluster_peering = Access("patch", "kopf.dev", "clusterkopfpeerings", name="kubetune")
    assert not _grants(RENDERED["defaults"]).allows(cluster_peering)
    assert _grants(RENDERED["all-on"]).allows(cluster_peering)
    namespaced = _grants(RENDERED["all-on-namespaced"])
    assert namespaced.allows(Access("patch", "kopf.dev", "kopfpeerings", namespace="ml", name="kubetune"))


def test_rbac_create_false_renders_no_rbac() -> None:
    assert all_rules(render({"rbac": {"create": False}})) == []
