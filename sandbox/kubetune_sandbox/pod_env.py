"""A container's environment as the kubelet builds it: envFrom, env with `$(VAR)`, Secret and
ConfigMap references (a missing one is the kubelet's CreateContainerConfigError, in its words),
and the downward API fields kubetune uses. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .pod_inputs import CONFIG_ERROR, LOOPBACK, Host, PodInputs, PodPlanError, contents

_VARIABLE = re.compile(r"\$\$|\$\((?P<name>[-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_KEY = re.compile(r"^metadata\.(?P<map>labels|annotations)\['(?P<key>[^']+)'\]$")


def container_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], *, inputs: PodInputs, host: Host
) -> tuple[dict[str, str], set[str]]:
    """envFrom, then env in order ($(VAR) sees the variables before it), as the kubelet builds it;
    and the names whose values come from Secrets (never rewritten)."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    env: dict[str, str] = {}
    from_secrets: set[str] = set()
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        for kind, objects, what in (
            ("configMapRef", inputs.config_maps, "configmap"),
            ("secretRef", inputs.secrets, "secret"),
        ):
            if kind not in source:
                continue
            ref = source[kind]
            found = objects.get(str(ref.get("name", "")))
            if found is None:
                if ref.get("optional"):
                    continue
                raise PodPlanError(CONFIG_ERROR, f'{what} "{ref.get("name")}" not found')
            for key, content in contents(found, encoded=what == "secret").items():
                env[prefix + key] = content.decode(errors="replace")
                if what == "secret":
                    from_secrets.add(prefix + key)
    for entry in container.get("env") or []:
        name = str(entry["name"])
        from_secrets.discard(name)
        if "valueFrom" not in entry:
            env[name] = expand(str(entry.get("value", "")), env)
            continue
        value = _value_from(pod, entry["valueFrom"], namespace=namespace, inputs=inputs, host=host)
        if value is not None:
            env[name] = value
            if "secretKeyRef" in entry["valueFrom"]:
                from_secrets.add(name)
    return env, from_secrets


def _value_from(
    pod: Mapping[str, Any], source: Mapping[str, Any], *, namespace: str, inputs: PodInputs, host: Host
) -> str | None:
    for kind, objects, what, label in (
        ("secretKeyRef", inputs.secrets, "secret", "Secret"),
        ("configMapKeyRef", inputs.config_maps, "configmap", "ConfigMap"),
    ):
        if kind not in source:
            continue
        ref = source[kind]
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        found = objects.get(name)
        if found is None:
            if ref.get("optional"):
                return None
            raise PodPlanError(CONFIG_ERROR, f'{what} "{name}" not found')
        values = contents(found, encoded=what == "secret")
        if key not in values:
            if ref.get("optional"):
                return None
            raise PodPlanError(CONFIG_ERROR, f"couldn't find key {key} in {label} {namespace}/{name}")
        return values[key].decode(errors="replace")
    if "fieldRef" in source:
        return _field(pod, str(source["fieldRef"].get("fieldPath", "")), host=host)
    raise PodPlanError(CONFIG_ERROR, f"the sandbox does not resolve env valueFrom {sorted(source)}")


def _field(pod: Mapping[str, Any], path: str, *, host: Host) -> str:
    """The downward API's fieldRef paths."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace") or "default",
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName") or host.node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": LOOPBACK,
        "status.podIPs": LOOPBACK,
        "status.hostIP": LOOPBACK,
        "status.hostIPs": LOOPBACK,
    }
    if path in simple:
        return str(simple[path] or "")
    if match := _FIELD_KEY.match(path):
        return str((meta.get(match["map"]) or {}).get(match["key"], ""))
    raise PodPlanError(CONFIG_ERROR, f"the sandbox does not resolve fieldRef {path}")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)`: replaced when VAR is defined, kept as written otherwise; `$$` is a `$`."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match["name"], match[0])

    return _VARIABLE.sub(replace, value)
