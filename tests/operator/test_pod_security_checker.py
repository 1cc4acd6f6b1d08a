"""The restricted-profile checker itself: it passes a compliant pod and names each rule a pod breaks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .pod_security import restricted_violations

COMPLIANT: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "c",
            "image": "i",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [{"name": "v", "emptyDir": {}}],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    pod = copy.deepcopy(COMPLIANT)
    node: Any = pod
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[last] = value
    return pod


def test_a_compliant_pod_passes() -> None:
    assert restricted_violations(COMPLIANT) == []


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("hostNetwork", True, "hostNetwork"),
        ("hostPID", True, "hostPID"),
        ("hostIPC", True, "hostIPC"),
        ("volumes", [{"name": "h", "hostPath": {"path": "/"}}], "hostPath"),
        ("volumes", [{"name": "n", "nfs": {"server": "s", "path": "/"}}], "not allowed"),
        ("securityContext.runAsNonRoot", False, "runAsNonRoot"),
        ("securityContext.runAsUser", 0, "runAsUser"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "seccompProfile"),
        ("containers.0.securityContext.privileged", True, "privileged"),
        ("containers.0.securityContext.allowPrivilegeEscalation", True, "allowPrivilegeEscalation"),
        ("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}, "drop must include ALL"),
        ("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}, "NET_BIND_SERVICE"),
        ("containers.0.ports", [{"containerPort": 80, "hostPort": 80}], "hostPort"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "sysctl"),
    ],
)
def test_each_restricted_rule_is_enforced(path: str, value: Any, words: str) -> None:
    violations = restricted_violations(_with(path, value))
    assert any(words in v for v in violations), violations


def test_adding_net_bind_service_is_allowed() -> None:
    pod = _with("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})
    assert restricted_violations(pod) == []


def test_a_missing_seccomp_profile_is_a_violation() -> None:
    pod = copy.deepcopy(COMPLIANT)
    del pod["securityContext"]["seccompProfile"]
    assert any("seccompProfile" in v for v in restricted_violations(pod))
