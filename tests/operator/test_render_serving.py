"""spec.serve renders a vLLM Deployment and Service, or a KServe InferenceService, that read the job's output.

The Deployment and Service pass kubernetes-validate (strict, 1.30 and 1.33) and the restricted pod profile;
the InferenceService passes the schema KServe's SDK (0.21.0) states for serving.kserve.io/v1beta1, and its
predictor's pod parts pass kubernetes-validate as a Pod.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from kubetune_operator.api.record import ResolvedJob
from kubetune_operator.api.serve import ServeSpec
from kubetune_operator.render.serving import ServingPlan, render_serving, serving_name
from kubetune_operator.resolve.serving import serving_gpus

from .core_builders import JOB, SETTINGS, resolved, spec
from .kserve_sdk_schema import validate as kserve_problems
from .pod_security import pod_spec_of, restricted_violations

HF_SECRET = {"name": "hf-token", "key": "token"}
S3 = {"credentialsSecretRef": {"name": "minio-keys"}, "endpointUrl": "http://minio.storage:9000"}
OUTPUTS: dict[str, dict[str, Any]] = {
    "pvc": {"output": {"uri": "pvc://models/support/v1"}},
    "s3": {"output": {"uri": "s3://models/support/v1"}, "storage": {"s3": S3}},
    "hf": {"output": {"uri": "hf://acme/support-bot"}, "hfTokenSecretRef": HF_SECRET},
}
LORA = {"merged": {"merge": True}, "adapter": {"merge": False}, "full": {"enabled": False}}


def _plan(kind: str, output: str, lora: str, **serve: Any) -> tuple[ServingPlan, ResolvedJob]:
    record = resolved(spec(**OUTPUTS[output], lora=LORA[lora], serve={"kind": kind, **serve}))
    job_serve = ServeSpec.parse({"kind": kind, **serve})
    return render_serving(job_serve, record, job=JOB, parameters=None, settings=SETTINGS), record


def _cases(kind: str) -> list[tuple[str, str, str]]:
    return [(kind, output, lora) for output in OUTPUTS for lora in LORA]


VLLM_CASES = _cases("vllm")
KSERVE_CASES = _cases("kserve")


def _args(container: dict[str, Any]) -> list[str]:
    args: list[str] = container["args"]
    return args


@pytest.mark.parametrize("kube_version", ["1.30.0", "1.33.0"])
@pytest.mark.parametrize(("kind", "output", "lora"), VLLM_CASES, ids=["-".join(c) for c in VLLM_CASES])
def test_vllm_objects_pass_kubernetes_validate_and_the_restricted_profile(
    kind: str, output: str, lora: str, kube_version: str
) -> None:
    plan, _ = _plan(kind, output, lora)
    assert [m["kind"] for m in plan.manifests] == ["Deployment", "Service"]
    for manifest in plan.manifests:
        kubernetes_validate.validate(manifest, kube_version, strict=True)
    assert restricted_violations(pod_spec_of(plan.manifests[0])) == []


@pytest.mark.parametrize(("kind", "output", "lora"), KSERVE_CASES, ids=["-".join(c) for c in KSERVE_CASES])
def test_inference_service_passes_kserves_schema_and_its_pod_parts_pass_kubernetes_validate(
    kind: str, output: str, lora: str
) -> None:
    plan, _ = _plan(kind, output, lora)
    (isvc,) = plan.manifests
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert kserve_problems(isvc) == []
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    container = {k: v for k, v in model.items() if k not in ("modelFormat", "storageUri")}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "predictor"},
        "spec": {
            "containers": [{"name": "kserve-container", "image": "kserve/huggingfaceserver:v0.15.2", **container}],
            **{k: v for k, v in predictor.items() if k in ("nodeSelector", "tolerations", "volumes")},
        },
    }
    kubernetes_validate.validate(pod, "1.33.0", strict=True)


def test_the_kserve_schema_check_catches_a_misspelt_field() -> None:
    plan, _ = _plan("kserve", "pvc", "merged")
    (isvc,) = plan.manifests
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    isvc["spec"]["predictor"]["minReplicas"] = "1"
    assert kserve_problems(isvc) == [
        "V1beta1InferenceService.spec.predictor.minReplicas: str where int is expected",
        "V1beta1InferenceService.spec.predictor.model.storageURI: not a field of V1beta1ModelSpec",
    ]


def test_vllm_serves_a_merged_output_from_its_claim_read_only() -> None:
    plan, record = _plan("vllm", "pvc", "merged")
    deployment, service = plan.manifests
    pod = pod_spec_of(deployment)
    (container,) = pod["containers"]
    assert container["command"] == ["vllm", "serve"]
    assert _args(container)[:2] == ["/mnt/pvc/models/support/v1", f"--served-model-name={record.output_name}"]
    assert not any(arg.startswith("--enable-lora") for arg in _args(container))
    assert {"name": "output", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    assert {"name": "output", "mountPath": "/mnt/pvc/models", "readOnly": True} in container["volumeMounts"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert plan.url == "http://support-bot.ml.svc.cluster.local:8000/v1"
    assert plan.model == record.output_name


def test_an_unmerged_adapter_is_served_over_its_base_at_the_commit_trained() -> None:
    base = resolved(spec(output={"uri": "pvc://models/support/v1"}, lora={"merge": False, "r": 48}))
    record = ResolvedJob.parse({**base.to_wire(), "revisionSha": "a" * 40})
    plan = render_serving(ServeSpec.parse({"kind": "vllm"}), record, job=JOB, parameters=None, settings=SETTINGS)
    args = _args(pod_spec_of(plan.manifests[0])["containers"][0])
    assert args[0] == record.model_repo == "meta-llama/Llama-2-7b-chat-hf"
    assert f"--revision={'a' * 40}" in args
    assert "--enable-lora" in args
    assert f"--lora-modules={record.output_name}=/mnt/pvc/models/support/v1" in args
    assert "--max-lora-rank=64" in args, "vLLM takes 8, 16, 32, 64...: rank 48 needs 64"
    assert plan.model == record.output_name, "a client asks for the adapter by the job's output name"


@pytest.mark.parametrize("output", ["pvc", "s3"])
def test_kserve_serves_an_unmerged_adapter_over_its_base_with_the_vllm_backend(output: str) -> None:
    plan, record = _plan("kserve", output, "adapter")
    model = plan.manifests[0]["spec"]["predictor"]["model"]
    # The runtime loads --model_id when given: the base; storageUri (the adapter) lands in /mnt/models.
    assert model["storageUri"] == OUTPUTS[output]["output"]["uri"]
    assert f"--model_id={record.model_repo}" in model["args"]
    assert "--backend=vllm" in model["args"]
    assert "--enable-lora" in model["args"]
    assert f"--lora-modules={record.output_name}=/mnt/models" in model["args"]


def test_kserve_serves_a_hub_adapter_by_its_repo() -> None:
    plan, record = _plan("kserve", "hf", "adapter")
    model = plan.manifests[0]["spec"]["predictor"]["model"]
    assert "storageUri" not in model
    assert f"--lora-modules={record.output_name}=acme/support-bot" in model["args"]


def test_kserve_reads_a_model_on_a_claim_or_in_a_bucket_through_storage_uri() -> None:
    for output, uri in (("pvc", "pvc://models/support/v1"), ("s3", "s3://models/support/v1")):
        plan, record = _plan("kserve", output, "merged", serviceAccountName="s3-reader")
        predictor = plan.manifests[0]["spec"]["predictor"]
        assert predictor["model"]["storageUri"] == uri
        assert predictor["model"]["modelFormat"] == {"name": "huggingface"}
        assert f"--model_name={record.output_name}" in predictor["model"]["args"]
        assert predictor["serviceAccountName"] == "s3-reader"
        assert plan.url is None, "KServe's status.url is reported once the predictor is ready"


def test_an_s3_output_is_copied_in_by_an_init_container_with_the_jobs_storage_env() -> None:
    plan, _ = _plan("vllm", "s3", "merged")
    pod = pod_spec_of(plan.manifests[0])
    (download,) = pod["initContainers"]
    assert download["command"][:3] == ["aws", "s3", "sync"]
    assert download["command"][-2:] == ["s3://models/support/v1", "/mnt/models/output"]
    env = {e["name"]: e for e in download["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "minio-keys"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
    assert _args(pod["containers"][0])[0] == "/mnt/models/output"


def test_a_hub_output_is_read_by_vllm_with_the_jobs_token_as_a_secret_reference() -> None:
    plan, _ = _plan("vllm", "hf", "merged")
    container = pod_spec_of(plan.manifests[0])["containers"][0]
    assert _args(container)[0] == "acme/support-bot"
    token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
    assert token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": HF_SECRET}}


@pytest.mark.parametrize("kind", ["vllm", "kserve"])
def test_owned_objects_name_the_job_as_controller_and_unowned_ones_name_no_owner(kind: str) -> None:
    owned, _ = _plan(kind, "pvc", "merged")
    for manifest in owned.manifests:
        (reference,) = manifest["metadata"]["ownerReferences"]
        assert reference["kind"] == "FineTuneJob"
        assert reference["uid"] == JOB.uid
        assert reference["controller"] is True
    kept, _ = _plan(kind, "pvc", "merged", owned=False)
    for manifest in kept.manifests:
        assert "ownerReferences" not in manifest["metadata"]
        assert manifest["metadata"]["annotations"]["kubetune.dev/served-job-uid"] == JOB.uid
        assert manifest["metadata"]["labels"]["kubetune.dev/served-job"] == JOB.name


def test_the_server_holds_the_records_gpus_and_lands_where_the_job_trained() -> None:
    plan, record = _plan("vllm", "pvc", "merged")
    pod = pod_spec_of(plan.manifests[0])
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": record.resources.gpu_product}
    assert pod["tolerations"] == [t.to_wire() for t in record.resources.tolerations]


def test_gpus_are_the_fewest_of_the_records_that_hold_the_weights_twice() -> None:
    small = resolved(spec())
    large = resolved(spec(model="meta-llama/Meta-Llama-3.1-70B-Instruct-Reference", lora={"enabled": False}))
    assert serving_gpus(ServeSpec.parse({"kind": "vllm"}), small, parameters=None) == 1
    # 70.6B parameters: 141 GB of bf16 weights, twice over in 72 GB usable per GPU: 4 GPUs (a power of two).
    assert serving_gpus(ServeSpec.parse({"kind": "vllm"}), large, parameters=None) == 4
    assert serving_gpus(ServeSpec.parse({"kind": "vllm", "gpus": 8}), large, parameters=None) == 8
    plan = render_serving(ServeSpec.parse({"kind": "vllm"}), large, job=JOB, parameters=None, settings=SETTINGS)
    pod = pod_spec_of(plan.manifests[0])
    assert "--tensor-parallel-size=4" in _args(pod["containers"][0])
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]


def test_names_are_stable_and_short_enough_for_kserve() -> None:
    serve = ServeSpec.parse({"kind": "kserve"})
    long_name = "support-bot-" + "x" * 50
    assert serving_name(long_name, serve) == serving_name(long_name, serve)
    assert len(serving_name(long_name, serve)) == 40
    assert serving_name(long_name, serve) != serving_name(long_name + "y", serve)
    assert serving_name("support-bot", serve) == "support-bot"
    assert serving_name("support-bot", ServeSpec.parse({"kind": "kserve", "name": "chat"})) == "chat"
