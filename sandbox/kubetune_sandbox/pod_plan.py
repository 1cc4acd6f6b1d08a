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

The rewriting is `path_rewrite.py`, the env `pod_env.py`, the inputs and errors `pod_inputs.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kubetune_operator.kube.connection import SERVICE_ACCOUNT_DIR
from kubetune_trainer.contract import SERVICE_ACCOUNT_DIR_ENV

from .layout import SandboxLayout
from .path_rewrite import HostPort, Rewriter
from .pod_env import container_env, expand
from .pod_inputs import CONFIG_ERROR, VOLUME_ERROR, Host, JsonObject, PodInputs, PodPlanError, contents

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULT_GRACE_SECONDS = 30
HOST_MOUNTS = frozenset({"/dev/shm"})
"""Container paths an emptyDir maps to the same host path: shared memory is the host's."""
PYTHONS = frozenset({"python", "python3"})
_STRUCTURED = (".json", ".yaml", ".yml")


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

    rewrite = Rewriter(paths, namespace=namespace, services=set(inputs.services), host_port=host_port)
    for path in mounts.documents:
        files[path] = rewrite.document(files[path], yaml_file=path.suffix != ".json")
    own_env, secret_names = container_env(pod, container, inputs=inputs, host=host)
    rewritten = {key: value if key in secret_names else rewrite.value(value) for key, value in own_env.items()}
    env = {**base_env, **rewritten, **(extra_env or {})}
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    if not command:
        raise PodPlanError(CONFIG_ERROR, "the sandbox cannot read an image's entrypoint: the container needs a command")
    argv = [rewrite.argument(expand(str(part), own_env)) for part in command]
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
    values = contents(source, encoded=encoded)
    items = volume.get("items")
    if not items:
        return {root / key: value for key, value in values.items()}
    return {root / item["path"]: values[item["key"]] for item in items if item["key"] in values}
