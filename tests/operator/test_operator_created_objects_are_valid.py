"""What the operator really sent to the API (not only what render returns) passes the same checks:
`kubernetes-validate --strict` for every built-in object and the restricted Pod Security profile for
every pod template, for a one-node and a two-node job with its preflight."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import Actors, wait_for
from .conftest import OPERATOR_AGENT, RunningOperator
from .journeys import pass_preflight
from .pod_security import pod_spec_of, restricted_violations

KUBE_VERSION = "1.31.0"


async def test_every_object_the_operator_created_is_valid_and_restricted(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await pass_preflight(cluster, actors, "solo")
    await pass_preflight(cluster, actors, "pair", model="two-nodes", gpus=4)
    await wait_for(lambda: len(_created(cluster)) >= 14, what="both jobs' children")

    created = _created(cluster)
    kinds = {obj["kind"] for obj in created}
    assert kinds >= {"ConfigMap", "Job", "ServiceAccount", "Role", "RoleBinding", "Service", "Event"}
    for obj in created:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        if obj["kind"] == "Job":
            assert restricted_violations(pod_spec_of(obj)) == [], obj["metadata"]["name"]


def _created(cluster: ApiEmulator) -> list[dict[str, Any]]:
    return [
        json.loads(request.text)
        for request in cluster.writes(user_agent=OPERATOR_AGENT)
        if request.method.value == "POST" and "/finetunejobs" not in request.url.path
    ]
