"""A checker for the Kubernetes restricted Pod Security Standard (baseline rules included).

It follows the policy as the Pod Security admission controller enforces it at `restricted`
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), for every container
kind (containers, initContainers, ephemeralContainers), and returns every violation it finds
so a test failure reads as the list of rules broken.
"""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_VOLUME_META_KEYS = frozenset({"name"})


def pod_spec_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod, or of a workload's pod template."""
    if manifest.get("kind") == "Pod":
        spec: dict[str, Any] = manifest["spec"]
        return spec
    template_spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return template_spec


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """Every rule of the restricted profile `pod_spec` breaks; empty when it complies."""
    found: list[str] = []
    pod_ctx = pod_spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            found.append(f"spec.{key} must be false or unset")
    if pod_ctx.get("windowsOptions", {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - _VOLUME_META_KEYS
        if "hostPath" in kinds:
            found.append(f"volume {volume.get('name')}: hostPath is forbidden")
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume.get('name')}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)} not allowed")
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    found += _selinux(pod_ctx, "spec.securityContext")
    found += _apparmor(pod_ctx, "spec.securityContext")
    if pod_ctx.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        found.append(f"spec.securityContext.seccompProfile.type {pod_seccomp} is not RuntimeDefault or Localhost")
    containers = [
        (kind, container)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for container in pod_spec.get(kind) or []
    ]
    if not pod_spec.get("containers"):
        found.append("spec.containers is empty")
    for kind, container in containers:
        found += _container(kind, container, pod_ctx=pod_ctx, pod_seccomp=pod_seccomp)
    return found


def _container(kind: str, container: dict[str, Any], *, pod_ctx: dict[str, Any], pod_seccomp: str | None) -> list[str]:
    where = f"{kind}[{container.get('name')}]"
    ctx = container.get("securityContext") or {}
    found: list[str] = []
    if ctx.get("privileged"):
        found.append(f"{where}: privileged must be false")
    if ctx.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}: allowPrivilegeEscalation must be false")
    if ctx.get("procMount", "Default") != "Default":
        found.append(f"{where}: procMount must be Default")
    if ctx.get("windowsOptions", {}).get("hostProcess"):
        found.append(f"{where}: hostProcess must not be true")
    run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
    if run_as_non_root is not True:
        found.append(f"{where}: runAsNonRoot must be true (on the container or the pod)")
    if ctx.get("runAsUser") == 0:
        found.append(f"{where}: runAsUser must not be 0")
    seccomp = (ctx.get("seccompProfile") or {}).get("type", pod_seccomp)
    if seccomp not in ALLOWED_SECCOMP:
        found.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost (got {seccomp})")
    capabilities = ctx.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append(f"{where}: capabilities.drop must include ALL")
    added = set(capabilities.get("add") or [])
    if not added <= ALLOWED_ADDED_CAPABILITIES:
        found.append(f"{where}: capabilities.add may hold only NET_BIND_SERVICE (got {sorted(added)})")
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            found.append(f"{where}: hostPort must be unset or 0")
    found += _selinux(ctx, where)
    found += _apparmor(ctx, where)
    return found


def _selinux(ctx: dict[str, Any], where: str) -> list[str]:
    options = ctx.get("seLinuxOptions") or {}
    found = []
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        found.append(f"{where}: seLinuxOptions.type {options['type']} not allowed")
    if options.get("user") or options.get("role"):
        found.append(f"{where}: seLinuxOptions.user and role must be unset")
    return found


def _apparmor(ctx: dict[str, Any], where: str) -> list[str]:
    profile = (ctx.get("appArmorProfile") or {}).get("type")
    if profile is not None and profile not in ALLOWED_APPARMOR:
        return [f"{where}: appArmorProfile.type {profile} not allowed"]
    return []
