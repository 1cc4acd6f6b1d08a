"""What one attempt renders: the objects a user finds with `kubectl get` and what each one says."""

from __future__ import annotations

import json
from typing import Any

from kubetune_operator.render import render_attempt, render_preflight
from kubetune_trainer.contract import TrainerConfig

from .core_builders import JOB, SETTINGS, resolved, spec

SECRETS = {
    "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
    "wandb": {"apiKeySecretRef": {"name": "wandb", "key": "api-key"}, "project": "p"},
}
MULTI_NODE = {"model": "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference"}


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = _by_kind(objects)["Job"]["spec"]["template"]["spec"]
    return pod


def test_objects_come_in_creation_order_owned_by_the_job() -> None:
    objects = render_attempt(resolved(spec(**MULTI_NODE)), job=JOB, attempt=2, settings=SETTINGS)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "support-bot-trainer"),
        ("Role", "support-bot-trainer"),
        ("RoleBinding", "support-bot-trainer"),
        ("ConfigMap", "support-bot-a2"),
        ("Service", "support-bot-a2"),
        ("Job", "support-bot-a2"),
    ]
    for o in objects:
        (owner,) = o["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "FineTuneJob",
            "name": "support-bot",
            "uid": JOB.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert o["metadata"]["namespace"] == "ml"
        assert o["metadata"]["labels"]["kubetune.dev/job"] == "support-bot"


def test_rendering_is_deterministic() -> None:
    job = resolved(spec(**MULTI_NODE))
    first = render_attempt(job, job=JOB, attempt=1, settings=SETTINGS)
    assert first == render_attempt(job, job=JOB, attempt=1, settings=SETTINGS)


def test_the_role_allows_only_get_and_patch_on_this_jobs_status() -> None:
    role = _by_kind(render_attempt(resolved(), job=JOB, attempt=1, settings=SETTINGS))["Role"]
    assert role["rules"] == [
        {
            "apiGroups": ["kubetune.dev"],
            "resources": ["finetunejobs/status"],
            "resourceNames": ["support-bot"],
            "verbs": ["get", "patch"],
        }
    ]
    binding = _by_kind(render_attempt(resolved(), job=JOB, attempt=1, settings=SETTINGS))["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "support-bot-trainer", "namespace": "ml"}]


def test_a_single_node_job_has_no_service_and_a_standalone_torchrun() -> None:
    objects = render_attempt(resolved(spec(gpus=8)), job=JOB, attempt=1, settings=SETTINGS)
    assert "Service" not in _by_kind(objects)
    (container,) = _pod(objects)["containers"]
    assert container["command"] == [
        "torchrun", "--nnodes", "1", "--nproc-per-node", "8", "--shutdown-timeout", "30", "--standalone",
        "-m", "kubetune_trainer", "--config", "/etc/kubetune/config.json",
    ]  # fmt: skip


def test_a_multi_node_job_is_an_indexed_job_with_a_rendezvous_at_pod_zero() -> None:
    objects = _by_kind(render_attempt(resolved(spec(**MULTI_NODE)), job=JOB, attempt=3, settings=SETTINGS))
    job_spec = objects["Job"]["spec"]
    assert (job_spec["completionMode"], job_spec["completions"], job_spec["parallelism"]) == ("Indexed", 4, 4)
    assert job_spec["backoffLimit"] == 0
    assert job_spec["suspend"] is False
    service = objects["Service"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"kubetune.dev/job": "support-bot", "kubetune.dev/attempt": "3"}
    pod = job_spec["template"]["spec"]
    assert pod["subdomain"] == "support-bot-a3"
    assert job_spec["template"]["metadata"]["labels"]["kubetune.dev/attempt"] == "3"
    command = pod["containers"][0]["command"]
    assert command[:5] == ["torchrun", "--nnodes", "4", "--nproc-per-node", "8"]
    assert command[command.index("--rdzv-backend") + 1] == "c10d"
    assert command[command.index("--rdzv-endpoint") + 1] == "support-bot-a3-0.support-bot-a3:29500"
    assert command[-4:] == ["-m", "kubetune_trainer", "--config", "/etc/kubetune/config.json"]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports == {"rendezvous": 29500, "metrics": SETTINGS.trainer_metrics_port}


def test_the_pod_holds_the_gpus_the_model_needs_not_the_templates_maximum() -> None:
    # LoRA on Llama-2-7B fits one 80 GB GPU: the template's eight are its maximum, not what a job holds.
    planned = _pod(render_attempt(resolved(), job=JOB, attempt=1, settings=SETTINGS))
    assert planned["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    full = _pod(render_attempt(resolved(spec(lora={"enabled": False})), job=JOB, attempt=1, settings=SETTINGS))
    assert 1 < int(full["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) <= 8
    (container,) = full["containers"]
    assert container["command"][3:5] == ["--nproc-per-node", container["resources"]["limits"]["nvidia.com/gpu"]]


def test_gpus_placement_and_memory_come_from_the_template() -> None:
    pod = _pod(render_attempt(resolved(spec(gpus=8)), job=JOB, attempt=1, settings=SETTINGS))
    resources = pod["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["nvidia.com/gpu"] == "8"
    assert resources["limits"]["cpu"] == "96"
    assert resources["limits"]["memory"] == "1024Gi"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "128Gi"}
    assert "cache" in volumes
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/dev/shm", "/cache", "/etc/kubetune", "/work", "/tmp"} <= mounts


def test_secrets_are_env_references_never_values() -> None:
    pod = _pod(render_attempt(resolved(spec(**SECRETS)), job=JOB, attempt=1, settings=SETTINGS))
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb", "key": "api-key"}}


def test_queue_priority_and_grace_period() -> None:
    fields = {"queueName": "gpu-queue", "priorityClassName": "training-high"}
    job = _by_kind(render_attempt(resolved(spec(**fields)), job=JOB, attempt=1, settings=SETTINGS))["Job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True  # Kueue admits it
    pod = job["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "training-high"
    assert pod["terminationGracePeriodSeconds"] > SETTINGS.checkpoint_grace_seconds
    assert pod["serviceAccountName"] == "support-bot-trainer"
    assert pod["restartPolicy"] == "Never"


def test_pvc_uris_are_mounted_where_the_trainer_looks_for_them() -> None:
    fields = {
        "trainingFile": "pvc://datasets/support/train.jsonl",
        "checkpoint": {"uri": "pvc://checkpoints/support"},
    }
    pod = _pod(render_attempt(resolved(spec(**fields)), job=JOB, attempt=1, settings=SETTINGS))
    claims = {v["persistentVolumeClaim"]["claimName"]: v for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims["datasets"]["persistentVolumeClaim"]["readOnly"] is True
    assert claims["checkpoints"]["persistentVolumeClaim"]["readOnly"] is False
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/mnt/pvc/datasets", "/mnt/pvc/checkpoints"} <= mounts


def test_the_config_map_holds_the_trainer_config_for_this_attempt() -> None:
    job = resolved(spec(**SECRETS, checkpoint={"uri": "s3://ckpt/x"}))
    objects = _by_kind(render_attempt(job, job=JOB, attempt=2, settings=SETTINGS, resume_from="support-bot:400"))
    config = TrainerConfig.from_json(objects["ConfigMap"]["data"]["config.json"])
    assert config.job.attempt == 2
    assert config.job.uid == JOB.uid
    assert config.runtime.resume_from == "support-bot:400"
    assert config.runtime.checkpoint_uri == "s3://ckpt/x"
    assert config.report.kind == "kubernetes"
    assert config.model.token_env == "HF_TOKEN"
    assert config.wandb is not None
    assert config.wandb.api_key_env == "WANDB_API_KEY"
    assert config.hyperparameters == job.hyperparameters


def test_the_preflight_holds_no_gpu_and_runs_the_preflight_command() -> None:
    objects = _by_kind(render_preflight(resolved(spec(**SECRETS)), job=JOB, settings=SETTINGS))
    assert objects["Job"]["metadata"]["name"] == "support-bot-preflight"
    pod = objects["Job"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == [
        "python", "-m", "kubetune_trainer", "preflight", "--config", "/etc/kubetune/config.json",
    ]  # fmt: skip
    assert container["image"] == SETTINGS.trainer_image
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert pod["automountServiceAccountToken"] is False
    assert {e["name"] for e in container["env"]} >= {"HF_TOKEN"}
    assert objects["Job"]["spec"]["backoffLimit"] == 0
