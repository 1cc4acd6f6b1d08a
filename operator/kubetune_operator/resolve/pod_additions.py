"""spec.pod against the administrator's allow-lists: one line per refused addition, naming names, never values. Pure.

What kubetune sets itself (its environment variables, its mount points) is never overridden,
whatever the allow-list says: a job would otherwise replace the HF token's variable or mount a
claim over the trainer's config.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..api.pod_additions import PodAdditions
from ..settings import OperatorSettings

KUBETUNE_ENV = frozenset(
    {
        "HF_TOKEN", "HF_HOME", "HF_HUB_OFFLINE", "HOME", "PYTHONUNBUFFERED", "WANDB_API_KEY",
        "MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
    }
)  # fmt: skip
KUBETUNE_ENV_PREFIXES = ("KUBETUNE_", "AWS_", "TORCHELASTIC_")
"""Names the operator and torchrun set in every pod (render/pod.py, render/object_store.py, torchrun)."""
KUBETUNE_MOUNTS = ("/etc/kubetune", "/cache", "/work", "/tmp", "/dev/shm", "/dev/termination-log")
"""Where pods already mount something (render/pod.py); the pvc:// mount root is the operator's setting."""
HINT = "ask your administrator to allow it, or leave it out"


def _allowed(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _kubetunes(name: str) -> bool:
    return name in KUBETUNE_ENV or name.startswith(KUBETUNE_ENV_PREFIXES)


def _overlaps(path: str, taken: str) -> bool:
    path, taken = path.rstrip("/") or "/", taken.rstrip("/") or "/"
    return path == taken or path.startswith(taken + "/") or taken.startswith(path + "/") or path == "/"


def _setting_words(patterns: tuple[str, ...], setting: str) -> str:
    shown = ", ".join(patterns) if patterns else "none"
    return f"operator setting {setting} allows: {shown}"


def pod_addition_problems(pod: PodAdditions | None, settings: OperatorSettings) -> list[str]:
    """Each addition the installation does not allow, as `spec.pod.<field>: what is wrong; what to do`."""
    if pod is None:
        return []
    problems: list[str] = []
    allowed_env = settings.pod_env_allowed
    named = [(f"env[{i}]", e.name) for i, e in enumerate(pod.env)]
    named += [(f"envFromSecrets[{i}]", e.name) for i, e in enumerate(pod.env_from_secrets)]
    seen: set[str] = set()
    for where, name in named:
        if _kubetunes(name):
            problems.append(f"spec.pod.{where}.name: {name} is set by kubetune itself and cannot be replaced")
        elif not _allowed(name, allowed_env):
            words = _setting_words(allowed_env, "podEnvAllowed")
            problems.append(f"spec.pod.{where}.name: {name} is not allowed by this installation ({words}); {HINT}")
        elif name in seen:
            problems.append(f"spec.pod.{where}.name: {name} is given twice")
        seen.add(name)
    mounts = (*KUBETUNE_MOUNTS, settings.pvc_mount_root)
    volume_names: set[str] = set()
    for i, volume in enumerate(pod.volumes):
        where = f"spec.pod.volumes[{i}]"
        if not _allowed(volume.claim_name, settings.pod_volume_claims_allowed):
            words = _setting_words(settings.pod_volume_claims_allowed, "podVolumeClaimsAllowed")
            problems.append(
                f"{where}.claimName: {volume.claim_name} is not allowed by this installation ({words}); {HINT}"
            )
        if any(_overlaps(volume.mount_path, taken) for taken in mounts):
            problems.append(
                f"{where}.mountPath: {volume.mount_path} overlaps where kubetune mounts its own volumes "
                f"({', '.join(mounts)}): choose another path, e.g. /data/{volume.name}"
            )
        if volume.name in volume_names:
            problems.append(f"{where}.name: {volume.name} is given twice")
        volume_names.add(volume.name)
    paths = [v.mount_path.rstrip("/") for v in pod.volumes]
    if len(set(paths)) != len(paths):
        problems.append("spec.pod.volumes: two volumes are mounted at the same path")
    if pod.tolerations and not settings.pod_tolerations_allowed:
        problems.append(
            "spec.pod.tolerations: this installation does not allow per-job tolerations (operator setting "
            f"podTolerationsAllowed is false); {HINT}"
        )
    if pod.affinity is not None and not settings.pod_affinity_allowed:
        problems.append(
            "spec.pod.affinity: this installation does not allow per-job node affinity (operator setting "
            f"podAffinityAllowed is false); {HINT}"
        )
    return problems
