"""Every API request the real operator (and kopf inside it) makes over a job lifecycle is allowed by the
RBAC the Helm chart gives it: cluster-wide, and with `watchNamespaces`.

The emulator records each request; each is turned into what RBAC authorizes (verb, group, resource,
namespace, name) and checked against the chart's rendered rules, as the API server would check them.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass

from ..deploy.chart import NAMESPACE as RELEASE_NAMESPACE
from ..deploy.chart import RELEASE, render
from ..deploy.rbac import Access, operator_grants
from .cluster_actors import NAMESPACE, Actors, trainer_failed, trainer_succeeded, wait_for
from .conftest import FTJ, OPERATOR_AGENT, StartOperator, status_of
from .journeys import run_attempt, to_running, until_phase

KOPF_AGENT = "kopf/"
READ_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def access_of(method: str, path: str, query: dict[str, str]) -> Access | None:
    """What RBAC authorizes for one request; None for discovery, which every user may read."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    name = rest[1] if len(rest) >= 2 else None
    verb = READ_VERBS[method]
    if method == "GET" and name is None:
        verb = "watch" if query.get("watch") in ("true", "1") else "list"
    if method == "DELETE" and name is None:
        verb = "deletecollection"
    return Access(verb, group, resource, namespace=namespace, name=name)


def operator_accesses(cluster: ApiEmulator) -> set[Access]:
    found = set()
    for request in cluster:
        if request.headers.get("User-Agent", "").startswith((OPERATOR_AGENT, KOPF_AGENT)):
            access = access_of(request.method.value, request.url.path, dict(request.url.query))
            if access is not None:
                found.add(access)
    return found


async def _lifecycle(cluster: ApiEmulator, actors: Actors) -> None:
    """Preflight, a retried attempt, a two-node attempt, success (served by vLLM, then KServe) and the TTL deletion."""
    (pod,) = await to_running(cluster, actors, "flaky", maxRetries=1, ttlSecondsAfterFinished=1, serve={"kind": "vllm"})
    await actors.terminate(
        pod, exit_code=1, message=trainer_failed(ErrorClass.INTERNAL, "UploadFailed", retryable=True)
    )
    (pod,) = await run_attempt(cluster, actors, "flaky", 2)
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await until_phase(cluster, "flaky", "Succeeded")
    await wait_for(lambda: cluster.live(FTJ, NAMESPACE, "flaky") is None, timeout=30, what="the TTL deletion")
    pods = await to_running(cluster, actors, "wide", model="two-nodes", gpus=4)
    assert len(pods) == 2
    (pod,) = await to_running(cluster, actors, "served", serve={"kind": "kserve"})
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("served-a1", "Complete")
    await wait_for(lambda: (status_of(cluster, "served").get("serving") or {}).get("state"), what="served's serving")


@pytest.mark.parametrize(
    "values", [{}, {"watchNamespaces": [NAMESPACE], "replicas": 1}], ids=["cluster-wide", "watch-namespaces"]
)
async def test_every_operator_request_is_allowed_by_the_chart_rbac(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator, values: dict[str, Any]
) -> None:
    await start_operator(namespaces=tuple(values.get("watchNamespaces", ())))
    await _lifecycle(cluster, actors)

    accesses = operator_accesses(cluster)
    grants = operator_grants(render(values), account=RELEASE, namespace=RELEASE_NAMESPACE)
    refused = sorted(str(a) for a in accesses if not grants.allows(a))
    assert refused == []
    # the lifecycle really exercised the operator's writes
    made = {(a.verb, a.resource) for a in accesses}
    expected = {("create", "jobs"), ("delete", "jobs"), ("patch", "finetunejobs/status"), ("create", "roles")}
    expected |= {("create", "services"), ("delete", "finetunejobs"), ("create", "events"), ("watch", "pods")}
    expected |= {("create", "deployments"), ("create", "inferenceservices")}
    assert expected <= made


def test_requests_map_to_what_rbac_authorizes() -> None:
    status = access_of("PATCH", "/apis/kubetune.dev/v1alpha1/namespaces/ml/finetunejobs/chat/status", {})
    assert status == Access("patch", "kubetune.dev", "finetunejobs/status", namespace="ml", name="chat")
    assert access_of("GET", "/api/v1/pods", {"watch": "true"}) == Access("watch", "", "pods")
    assert access_of("GET", "/api/v1/namespaces", {}) == Access("list", "", "namespaces")
    assert access_of("GET", "/apis/batch/v1", {}) is None, "discovery"
    assert access_of("DELETE", "/apis/batch/v1/namespaces/ml/jobs/chat-a1", {}) == Access(
        "delete", "batch", "jobs", namespace="ml", name="chat-a1"
    )
