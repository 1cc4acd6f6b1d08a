"""spec.serve: on Succeeded the real operator creates the serving objects, owned or not as asked, and says so.

Against the emulator: a vLLM Deployment and Service owned by the job (collected with it) and named in
status.serving with their cluster DNS URL; a KServe InferenceService left after the job is deleted, whose
status.url reaches status.serving once KServe reports it; where KServe is not installed (404), the job stays
Succeeded with a ServingNotCreated warning and Event; and a serve block no server could honour (an output
left in the trainer's pod) is refused at admission, before any pod.
"""

from __future__ import annotations

from typing import Any

import kmock

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, Actors, trainer_succeeded, wait_for
from .conftest import FTJ, JOBS, SERVICES, RunningOperator, StartOperator, event_reasons, status_of
from .journeys import error_of, to_running, until_phase
from .kserve_sdk_schema import validate as kserve_problems

DEPLOYMENTS = kmock.resource("apps/v1/deployments")
ISVCS = kmock.resource("serving.kserve.io/v1beta1/inferenceservices")
KSERVE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "inferenceservices.serving.kserve.io"},
    "spec": {
        "group": "serving.kserve.io",
        "scope": "Namespaced",
        "names": {"kind": "InferenceService", "plural": "inferenceservices", "singular": "inferenceservice"},
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


async def _succeed(cluster: ApiEmulator, actors: Actors, name: str, **spec: Any) -> dict[str, Any]:
    (pod,) = await to_running(cluster, actors, name, **spec)
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition(f"{name}-a1", "Complete")
    return await until_phase(cluster, name, "Succeeded")


def _serving(cluster: ApiEmulator, name: str) -> dict[str, Any]:
    serving: dict[str, Any] = status_of(cluster, name).get("serving") or {}
    return serving


async def _succeed_and_serve(cluster: ApiEmulator, actors: Actors, name: str, **spec: Any) -> dict[str, Any]:
    """Run `name` to Succeeded; its status.serving once the operator has given it a state."""
    await _succeed(cluster, actors, name, **spec)
    serving: dict[str, Any] = await wait_for(lambda: _serving(cluster, name).get("state") and _serving(cluster, name))
    return serving


async def _assert_succeeded_with_one_serving_warning(cluster: ApiEmulator, name: str) -> dict[str, Any]:
    """The job stays Succeeded with one ServingNotCreated warning, also posted as an Event; that warning."""
    status = status_of(cluster, name)
    assert status["phase"] == "Succeeded"
    serving_warnings: list[dict[str, Any]] = [w for w in status["warnings"] if w["reason"] == "ServingNotCreated"]
    (warning,) = serving_warnings
    await wait_for(lambda: "ServingNotCreated" in event_reasons(cluster, name), what="the Warning Event")
    return warning


async def test_vllm_deployment_and_service_are_created_owned_and_named_in_status(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    serving = await _succeed_and_serve(cluster, actors, "chat", serve={"kind": "vllm"}, lora={"merge": False})
    assert serving["state"] == "Created"
    assert serving["objects"] == ["Deployment/chat", "Service/chat"]
    assert serving["url"] == f"http://chat.{NAMESPACE}.svc.cluster.local:8000/v1"
    assert serving["owned"] is True
    job = cluster.live(FTJ, NAMESPACE, "chat")
    assert job is not None
    deployment = cluster.live(DEPLOYMENTS, NAMESPACE, "chat")
    service = cluster.live(SERVICES, NAMESPACE, "chat")
    assert deployment is not None
    assert service is not None
    for made in (deployment, service):
        (owner,) = made["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("FineTuneJob", job["metadata"]["uid"], True)
    # An unmerged adapter, served over the base model at the commit the preflight resolved.
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    record = job["status"]["resolved"]["record"]
    assert args[0] == record["modelRepo"]
    assert f"--revision={record['revisionSha']}" in args
    assert f"--lora-modules={record['outputName']}={_pvc_path(record['outputUri'])}" in args
    assert serving["model"] == record["outputName"]
    await wait_for(lambda: "ServingCreated" in event_reasons(cluster, "chat"), what="the ServingCreated Event")
    assert status_of(cluster, "chat")["phase"] == "Succeeded"

    await actors.delete("/apis/kubetune.dev/v1alpha1", "finetunejobs", "chat")
    await wait_for(lambda: cluster.live(DEPLOYMENTS, NAMESPACE, "chat") is None, what="the Deployment collected")
    assert event_reasons(cluster, "chat").count("ServingCreated") == 1, "created once, whatever the passes"


def _pvc_path(uri: str) -> str:
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return f"/mnt/pvc/{claim}/{path}"


async def test_unowned_inference_service_outlives_the_job_and_its_url_reaches_status(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    cluster.register_crd(KSERVE_CRD)
    await start_operator(serving_url_poll_seconds=0.2)
    serving = await _succeed_and_serve(
        cluster, actors, "chat", serve={"kind": "kserve", "owned": False, "name": "chat-llm"}
    )
    assert (serving["state"], serving["owned"], serving["objects"]) == ("Created", False, ["InferenceService/chat-llm"])
    assert serving.get("url") is None, "no URL before KServe reports one"
    isvc = cluster.live(ISVCS, NAMESPACE, "chat-llm")
    assert isvc is not None
    assert "ownerReferences" not in isvc["metadata"]
    assert kserve_problems({k: v for k, v in isvc.items() if k != "status"}) == []
    assert isvc["spec"]["predictor"]["model"]["storageUri"].startswith("pvc://")

    url = "http://chat-llm.ml.example.com"
    async with cluster.patch(
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/chat-llm/status",
        json={"status": {"url": url}},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as answer:
        assert answer.status < 400, await answer.text()
    await wait_for(lambda: _serving(cluster, "chat").get("url") == url, what="status.serving.url from KServe")
    await wait_for(lambda: "ServingReady" in event_reasons(cluster, "chat"), what="the ServingReady Event")

    await actors.delete("/apis/kubetune.dev/v1alpha1", "finetunejobs", "chat")
    await wait_for(lambda: cluster.live(FTJ, NAMESPACE, "chat") is None, what="the job deleted")
    assert cluster.live(ISVCS, NAMESPACE, "chat-llm") is not None, "owned: false leaves the InferenceService"


NOT_INSTALLED = {
    "apiVersion": "v1",
    "kind": "Status",
    "status": "Failure",
    "reason": "NotFound",
    "message": "the server could not find the requested resource",
    "code": 404,
}
"""What an API server answers for a group it does not serve (the emulator itself accepts any path)."""


async def test_without_kserve_the_job_stays_succeeded_with_a_warning_and_an_event(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    cluster[ISVCS] << 404 << NOT_INSTALLED
    serving = await _succeed_and_serve(cluster, actors, "chat", serve={"kind": "kserve"})
    assert serving["state"] == "Failed"
    assert "serving.kserve.io/v1beta1 API is not installed" in serving["message"]
    assert "serve.kind: vllm" in serving["message"]
    warning = await _assert_succeeded_with_one_serving_warning(cluster, "chat")
    assert "install KServe" in warning["message"]
    assert cluster.live(DEPLOYMENTS, NAMESPACE, "chat") is None


async def test_a_serve_block_no_server_can_honour_is_refused_before_any_pod(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    from .conftest import job_manifest

    manifest = job_manifest("chat", serve={"kind": "kserve"}, output={"uri": "/models/chat"})
    await actors.apply_job(manifest)
    status = await until_phase(cluster, "chat", "Failed")
    error = error_of(cluster, "chat")
    assert error["class"] == "InvalidInput"
    assert "spec.serve" in error["message"]
    assert "pvc://claim/path" in error["message"]
    assert status.get("serving") is None
    assert cluster.live(JOBS, NAMESPACE, "chat-preflight") is None


FORBIDDEN = {
    "apiVersion": "v1",
    "kind": "Status",
    "status": "Failure",
    "reason": "Forbidden",
    "message": 'deployments.apps is forbidden: User "system:serviceaccount:kubetune:kubetune" cannot create resource',
    "code": 403,
}


async def test_a_server_the_operator_may_not_create_is_a_warning_naming_the_rights_and_the_command(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    cluster[DEPLOYMENTS] << 403 << FORBIDDEN
    serving = await _succeed_and_serve(cluster, actors, "chat", serve={"kind": "vllm"})
    assert serving["state"] == "Failed"
    assert "403 Forbidden" in serving["message"]
    assert "rbac.serving" in serving["message"]
    assert "kubetune jobs serve chat" in serving["message"]
    await _assert_succeeded_with_one_serving_warning(cluster, "chat")
