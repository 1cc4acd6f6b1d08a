"""spec.pod: what an administrator allows reaches the pods; anything else is refused naming the field and
the name, never the value; kubetune's own variables and mount points are never replaced. Pure."""

from __future__ import annotations

from typing import Any

from kubetune_operator.handlers.webhook import spec_problems
from kubetune_operator.render import render_attempt, render_preflight
from kubetune_operator.resolve.pod_additions import KUBETUNE_ENV, KUBETUNE_ENV_PREFIXES
from kubetune_operator.resolve.resolution import Unresolved, resolve_job
from kubetune_operator.settings import OperatorSettings

from .core_builders import CATALOG, JOB, SETTINGS, resolved, spec

ALLOWING = OperatorSettings(
    **{
        **SETTINGS.model_dump(),
        "pod_env_allowed": ("NCCL_*", "DATASET_TOKEN"),
        "pod_volume_claims_allowed": ("datasets-*",),
        "pod_tolerations_allowed": True,
        "pod_affinity_allowed": True,
    }
)
PLAIN_VALUE = "value-that-must-never-be-echoed-7f3a"
AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In",
                                                          "values": ["us-east-1a"]}]}]
        }
    }
}  # fmt: skip
ADDITIONS: dict[str, Any] = {
    "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
    "envFromSecrets": [{"name": "DATASET_TOKEN", "secretKeyRef": {"name": "dataset", "key": "token"}}],
    "volumes": [{"name": "corpus", "claimName": "datasets-2026", "mountPath": "/data/corpus"}],
    "tolerations": [{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "affinity": AFFINITY,
}


def _pod_spec(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _refusal(settings: OperatorSettings, **pod: Any) -> str:
    outcome = resolve_job(
        spec(pod=pod), job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG, settings=settings
    )
    assert outcome.job is None
    assert outcome.problem == Unresolved.INVALID_SPEC
    assert PLAIN_VALUE not in outcome.message, "names, never values"
    return outcome.message


def test_allowed_additions_reach_the_trainer_and_preflight_pods() -> None:
    job = resolved(spec(pod=ADDITIONS), settings=ALLOWING)
    trainer = _pod_spec(render_attempt(job, job=JOB, attempt=1, settings=ALLOWING))
    (container,) = trainer["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NCCL_DEBUG"]["value"] == "INFO"
    assert env["DATASET_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "dataset", "key": "token"}}
    assert {"name": "extra-corpus", "persistentVolumeClaim": {"claimName": "datasets-2026", "readOnly": True}} in (
        trainer["volumes"]
    )
    assert {"name": "extra-corpus", "mountPath": "/data/corpus", "readOnly": True} in container["volumeMounts"]
    assert {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in trainer["tolerations"]
    assert trainer["affinity"] == AFFINITY

    preflight = _pod_spec(render_preflight(job, job=JOB, settings=ALLOWING))
    (checker,) = preflight["containers"]
    assert {"NCCL_DEBUG", "DATASET_TOKEN"} <= {e["name"] for e in checker["env"]}
    assert "extra-corpus" in {v["name"] for v in preflight["volumes"]}
    assert "tolerations" not in preflight, "the CPU preflight keeps its own placement"


def test_nothing_is_allowed_by_default_and_each_refusal_names_the_field_and_the_setting() -> None:
    message = _refusal(
        SETTINGS,
        env=[{"name": "NCCL_DEBUG", "value": PLAIN_VALUE}],
        volumes=[{"name": "corpus", "claimName": "datasets-2026", "mountPath": "/data/corpus"}],
        tolerations=[{"key": "team", "operator": "Exists"}],
        affinity=AFFINITY,
    )
    for words in (
        "spec.pod.env[0].name: NCCL_DEBUG is not allowed by this installation",
        "podEnvAllowed allows: none",
        "spec.pod.volumes[0].claimName: datasets-2026 is not allowed",
        "podVolumeClaimsAllowed",
        "spec.pod.tolerations: this installation does not allow per-job tolerations",
        "spec.pod.affinity: this installation does not allow per-job node affinity",
        "ask your administrator",
    ):
        assert words in message, words


def test_kubetunes_own_variables_and_mounts_cannot_be_replaced_even_when_allowed() -> None:
    everything = OperatorSettings(
        **{**ALLOWING.model_dump(), "pod_env_allowed": ("*",), "pod_volume_claims_allowed": ("*",)}
    )
    message = _refusal(
        everything,
        env=[{"name": "HF_TOKEN", "value": PLAIN_VALUE}],
        envFromSecrets=[{"name": "AWS_SECRET_ACCESS_KEY", "secretKeyRef": {"name": "mine", "key": "k"}}],
        volumes=[
            {"name": "over", "claimName": "x", "mountPath": "/etc/kubetune"},
            {"name": "under", "claimName": "y", "mountPath": "/work/data"},
            {"name": "claims", "claimName": "z", "mountPath": SETTINGS.pvc_mount_root},
        ],
    )
    assert "spec.pod.env[0].name: HF_TOKEN is set by kubetune itself" in message
    assert "spec.pod.envFromSecrets[0].name: AWS_SECRET_ACCESS_KEY is set by kubetune itself" in message
    for index in range(3):
        assert f"spec.pod.volumes[{index}].mountPath" in message


def test_every_variable_kubetune_renders_is_reserved() -> None:
    job = resolved(
        spec(
            hfTokenSecretRef={"name": "hf", "key": "token"},
            wandb={"apiKeySecretRef": {"name": "wandb", "key": "key"}, "project": "p"},
            storage={"s3": {"credentialsSecretRef": {"name": "s3", "accessKeyIdKey": "id", "secretAccessKeyKey": "k",
                                                     "sessionTokenKey": "t"}, "endpointUrl": "http://minio:9000",
                            "region": "eu-west-1"}},
        )
    )  # fmt: skip
    (container,) = _pod_spec(render_attempt(job, job=JOB, attempt=1, settings=SETTINGS))["containers"]
    rendered = {e["name"] for e in container["env"]}
    assert rendered
    assert all(name in KUBETUNE_ENV or name.startswith(KUBETUNE_ENV_PREFIXES) for name in rendered), rendered


def test_the_webhook_refuses_what_the_allow_lists_refuse() -> None:
    body = {"model": "togethercomputer/llama-2-7b-chat", "trainingFile": "s3://data/train.jsonl", "pod": ADDITIONS}
    assert spec_problems(body, allowing=ALLOWING) == []
    refused = spec_problems(body, allowing=SETTINGS)
    assert any(p.startswith("spec.pod.env[0].name: NCCL_DEBUG") for p in refused)
    assert all("INFO" not in p for p in refused), "names, never values"
