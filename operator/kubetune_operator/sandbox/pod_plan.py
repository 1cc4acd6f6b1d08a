"""A pod manifest -> the host process that plays its container: argv, env, files, directories. Pure.

What the kubelet and the container runtime would do, translated to one machine:
- volumes become host directories: PersistentVolumeClaims the layout's shared claim directories
  (and the directory holding claims mounted under their own names, the trainer's pvcMountRoot,
  the layout's directory of claims), emptyDirs and ConfigMap/Secret volumes directories of the
  pod's own (files listed in the plan), an emptyDir at /dev/shm the host's /dev/shm;
- container paths under a mount (and the termination log, and the ServiceAccount directory)
  are rewritten to host paths wherever a whole value names one: argv elements (also
  `--flag=/path`), env values, and string values inside JSON and YAML files of ConfigMaps;
- `<pod>.<service>[.<namespace>.svc[.cluster.local]]:<port>` becomes 127.0.0.1 and a host port
  the caller allocates per (namespace, service, port), so pods of one Service meet on loopback;
- env as the kubelet builds it: `$(VAR)` expansion, Secret and ConfigMap references (a missing
  one is the kubelet's CreateContainerConfigError, in the kubelet's words), the downward API.
Secret values live only in `ProcessPlan.env` and `files`, which no repr shows.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from kubetune_trainer.contract import SERVICE_ACCOUNT_DIR_ENV

from ..kube.connection import SERVICE_ACCOUNT_DIR
from .layout import SandboxLayout

JsonObject = dict[str, Any]
HostPort = Callable[[str, str, int], int]
"""(namespace, service, port) -> the loopback port standing for that Service port."""

CONFIG_ERROR = "CreateContainerConfigError"
VOLUME_ERROR = "ContainerCreating"
"""A volume that cannot be set up keeps the container waiting, as FailedMount does."""
LOOPBACK = "127.0.0.1"
NODE_NAME = "kubetune-sandbox"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULT_GRACE_SECONDS = 30
HOST_MOUNTS = frozenset({"/dev/shm"})
"""Container paths an emptyDir maps to the same host path: shared memory is the host's."""
PYTHONS = frozenset({"python", "python3"})
_STRUCTURED = (".json", ".yaml", ".yml")
_SERVICE_ADDRESS = re.compile(
    r"\b(?P<host>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.(?P<service>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
    r"(?:\.(?P<namespace>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc(?:\.cluster\.local)?)?:(?P<port>\d{1,5})\b"
)
_VARIABLE = re.compile(r"\$\$|\$\((?P<name>[-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_KEY = re.compile(r"^metadata\.(?P<map>labels|annotations)\['(?P<key>[^']+)'\]$")


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


@dataclass(frozen=True)
class ProcessPlan:
    container: str
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    cwd: Path
    files: Mapping[Path, bytes] = field(repr=False)
    """Files to write before the start: ConfigMap and Secret volumes, ServiceAccount, an empty termination log."""
    directories: tuple[Path, ...]
    termination_log: Path
    log_file: Path
    """Where the container's stdout and stderr go (`kubectl logs`)."""
    fallback_to_logs: bool
    """terminationMessagePolicy FallbackToLogsOnError: a failed container's message is its log's tail."""
    grace_seconds: int
    """terminationGracePeriodSeconds: SIGTERM, then SIGKILL after this long."""
    pod_dir: Path
    """The pod's own directory (Secret files, the ServiceAccount token): its user's alone, as the kubelet's is."""


def plan_pod(
    pod: Mapping[str, Any],
    *,
    layout: SandboxLayout,
    inputs: PodInputs,
    host: Host,
    host_port: HostPort,
    extra_env: Mapping[str, str] | None = None,
) -> ProcessPlan:
    """The process for the pod's one container; `extra_env` (the sandbox's own) wins over the pod's."""
    try:
        return _plan(pod, layout=layout, inputs=inputs, host=host, host_port=host_port, extra_env=extra_env)
    except KeyError as error:  # the emulator does not validate pods as the API server does
        raise PodPlanError(
            CONFIG_ERROR, f"the sandbox cannot read the pod spec: a required field {error} is missing"
        ) from None
    except (TypeError, ValueError) as error:
        raise PodPlanError(CONFIG_ERROR, f"the sandbox cannot read the pod spec: {error}") from None


def _plan(
    pod: Mapping[str, Any],
    *,
    layout: SandboxLayout,
    inputs: PodInputs,
    host: Host,
    host_port: HostPort,
    extra_env: Mapping[str, str] | None,
) -> ProcessPlan:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
    containers = spec.get("containers") or []
    if len(containers) != 1 or spec.get("initContainers"):
        raise PodPlanError(CONFIG_ERROR, "the sandbox runs pods of exactly one container and no init containers")
    container: Mapping[str, Any] = containers[0]
    pod_dir = layout.pod_dir(namespace, name)
    mounts = _Mounts(layout=layout, pod_dir=pod_dir, inputs=inputs)
    for mount in container.get("volumeMounts") or []:
        mounts.add(mount, {v["name"]: v for v in spec.get("volumes") or []})
    files, directories, paths = mounts.files, [pod_dir, *mounts.directories], mounts.paths
    mounted = {target for target, _ in paths}
    paths += [(root, host_root) for root, host_root in mounts.claim_roots.items() if root not in mounted]

    termination_log = pod_dir / "termination-log"
    files[termination_log] = b""
    paths.append((str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH), termination_log))
    base_env = {
        "PATH": f"{host.interpreter.parent}:{CONTAINER_PATH}",
        "HOSTNAME": str(spec.get("hostname") or name),
        "HOME": str(pod_dir / "home"),
        "KUBERNETES_SERVICE_HOST": host.endpoint.host,
        "KUBERNETES_SERVICE_PORT": str(host.endpoint.port),
    }
    directories.append(pod_dir / "home")
    if spec.get("automountServiceAccountToken") is not False:
        account = pod_dir / "serviceaccount"
        files[account / "token"] = host.endpoint.token.encode()
        files[account / "namespace"] = namespace.encode()
        if host.endpoint.ca_pem is not None:
            files[account / "ca.crt"] = host.endpoint.ca_pem
        paths.append((str(SERVICE_ACCOUNT_DIR), account))
        base_env[SERVICE_ACCOUNT_DIR_ENV] = str(account)

    rewrite = _Rewriter(paths, namespace=namespace, services=set(inputs.services), host_port=host_port)
    for path in mounts.documents:
        files[path] = rewrite.document(files[path], yaml_file=path.suffix != ".json")
    container_env, secret_names = _container_env(pod, container, inputs=inputs, host=host)
    rewritten = {key: value if key in secret_names else rewrite.value(value) for key, value in container_env.items()}
    env = {**base_env, **rewritten, **(extra_env or {})}
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    if not command:
        raise PodPlanError(CONFIG_ERROR, "the sandbox cannot read an image's entrypoint: the container needs a command")
    argv = [rewrite.argument(_expand(str(part), container_env)) for part in command]
    if argv[0] in PYTHONS:
        argv[0] = str(host.interpreter)
    working_dir = container.get("workingDir")
    cwd = Path(rewrite.value(working_dir)) if working_dir else pod_dir
    return ProcessPlan(
        container=str(container.get("name", "")),
        image=str(container.get("image", "")),
        argv=tuple(argv),
        env=env,
        cwd=cwd,
        files=files,
        directories=tuple(dict.fromkeys(directories)),
        termination_log=termination_log,
        log_file=pod_dir / "container.log",
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        grace_seconds=int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)),
        pod_dir=pod_dir,
    )


class _Mounts:
    """The container's volumeMounts as host paths, with the directories and files they need."""

    def __init__(self, *, layout: SandboxLayout, pod_dir: Path, inputs: PodInputs) -> None:
        self._layout, self._pod_dir, self._inputs = layout, pod_dir, inputs
        self.paths: list[tuple[str, Path]] = []
        self.directories: list[Path] = []
        self.files: dict[Path, bytes] = {}
        self.documents: list[Path] = []
        """ConfigMap files holding JSON or YAML, whose string values name container paths."""
        self.claim_roots: dict[str, Path] = {}

    def add(self, mount: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]]) -> None:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodPlanError(CONFIG_ERROR, f'volumeMount "{mount["name"]}" names no volume of the pod')
        target = str(mount["mountPath"]).rstrip("/") or "/"
        root = self._pod_dir / "volumes" / str(volume["name"])
        sub_path = str(mount.get("subPath") or "")
        if "persistentVolumeClaim" in volume or "emptyDir" in volume:
            if "persistentVolumeClaim" in volume:
                claim = str(volume["persistentVolumeClaim"]["claimName"])
                root = self._layout.volume(claim)
                self._claim_root(target, claim)
            elif target in HOST_MOUNTS:
                root = Path(target)
            if str(root) not in HOST_MOUNTS:
                self.directories.append(root / sub_path if sub_path else root)
        elif "configMap" in volume:
            source = _volume_source(volume, "configMap", self._inputs.config_maps, what="configmap")
            written = _volume_files(source, volume["configMap"], root, encoded=False)
            self.documents += [path for path in written if path.suffix in _STRUCTURED]
            self.files.update(written)
            self.directories.append(root)
        elif "secret" in volume:
            secrets = self._inputs.secrets
            source = _volume_source(volume, "secret", secrets, what="secret", name_key="secretName")
            self.files.update(_volume_files(source, volume["secret"], root, encoded=True))
            self.directories.append(root)
        else:
            kinds = "persistentVolumeClaim, emptyDir, configMap, secret"
            raise PodPlanError(CONFIG_ERROR, f'volume "{volume["name"]}": the sandbox mounts only {kinds}')
        self.paths.append((target, root / sub_path if sub_path else root))

    def _claim_root(self, target: str, claim: str) -> None:
        """Claims mounted as `<dir>/<claim>` make `<dir>` the layout's claim directory (pvcMountRoot)."""
        mounted = PurePosixPath(target)
        if mounted.name == claim and len(mounted.parts) > 2:
            self.claim_roots[str(mounted.parent)] = self._layout.volume(claim).parent


def _volume_source(
    volume: Mapping[str, Any], kind: str, objects: Mapping[str, JsonObject], *, what: str, name_key: str = "name"
) -> JsonObject:
    source = volume[kind]
    found = objects.get(str(source.get(name_key, "")))
    if found is None:
        if source.get("optional"):
            return {}
        message = f'MountVolume.SetUp failed for volume "{volume["name"]}" : {what} "{source.get(name_key)}" not found'
        raise PodPlanError(VOLUME_ERROR, message)
    return found


def _volume_files(source: JsonObject, volume: Mapping[str, Any], root: Path, *, encoded: bool) -> dict[Path, bytes]:
    contents = _contents(source, encoded=encoded)
    items = volume.get("items")
    if not items:
        return {root / key: value for key, value in contents.items()}
    return {root / item["path"]: contents[item["key"]] for item in items if item["key"] in contents}


def _contents(source: JsonObject, *, encoded: bool) -> dict[str, bytes]:
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


def _container_env(
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
            for key, content in _contents(found, encoded=what == "secret").items():
                env[prefix + key] = content.decode(errors="replace")
                if what == "secret":
                    from_secrets.add(prefix + key)
    for entry in container.get("env") or []:
        name = str(entry["name"])
        from_secrets.discard(name)
        if "valueFrom" not in entry:
            env[name] = _expand(str(entry.get("value", "")), env)
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
        contents = _contents(found, encoded=what == "secret")
        if key not in contents:
            if ref.get("optional"):
                return None
            raise PodPlanError(CONFIG_ERROR, f"couldn't find key {key} in {label} {namespace}/{name}")
        return contents[key].decode(errors="replace")
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


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)`: replaced when VAR is defined, kept as written otherwise; `$$` is a `$`."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match["name"], match[0])

    return _VARIABLE.sub(replace, value)


class _Rewriter:
    """Container paths and Service addresses in values -> host paths and loopback ports."""

    def __init__(
        self, paths: list[tuple[str, Path]], *, namespace: str, services: set[tuple[str, str]], host_port: HostPort
    ) -> None:
        # The deepest mount first: /work/out under a /work mount belongs to the /work/out mount.
        self._paths = sorted(paths, key=lambda pair: len(pair[0]), reverse=True)
        self._namespace = namespace
        self._services = services
        self._host_port = host_port

    def value(self, text: str) -> str:
        return self._addresses(self._path(text))

    def argument(self, text: str) -> str:
        if text.startswith("-") and "=" in text:
            flag, value = text.split("=", 1)
            return f"{flag}={self.value(value)}"
        return self.value(text)

    def document(self, content: bytes, *, yaml_file: bool) -> bytes:
        """String values rewritten inside a JSON or YAML document; anything else is kept as it is."""
        try:
            data = yaml.safe_load(content) if yaml_file else json.loads(content)
        except (ValueError, yaml.YAMLError):
            return content
        rewritten = self._structure(data)
        if yaml_file:
            return yaml.safe_dump(rewritten, sort_keys=False).encode()
        return json.dumps(rewritten, indent=2).encode()

    def _structure(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.value(data)
        if isinstance(data, list):
            return [self._structure(item) for item in data]
        if isinstance(data, dict):
            return {key: self._structure(item) for key, item in data.items()}
        return data

    def _path(self, text: str) -> str:
        if not text.startswith("/"):
            return text
        for container, host in self._paths:
            if text == container:
                return str(host)
            if text.startswith(container.rstrip("/") + "/"):
                return f"{host}{text[len(container.rstrip('/')) :]}"
        return text

    def _addresses(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            namespace = match["namespace"] or self._namespace
            if (namespace, match["service"]) not in self._services:
                return match[0]
            return f"{LOOPBACK}:{self._host_port(namespace, match['service'], int(match['port']))}"

        return _SERVICE_ADDRESS.sub(replace, text)
