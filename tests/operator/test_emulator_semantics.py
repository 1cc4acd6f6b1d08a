"""The emulator's docstring claims, checked over HTTP: what the operator tests rely on really holds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, wait_for
from .conftest import CONFIGMAPS, FTJ, JOBS, PODS, job_manifest

MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
FTJS = f"/apis/kubetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs"


async def _call(cluster: ApiEmulator, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with cluster.request(method, url, **kwargs) as answer:
        return answer.status, await answer.json()


async def test_create_sets_identity_and_refuses_a_second_copy(cluster: ApiEmulator) -> None:
    code, made = await _call(cluster, "POST", FTJS, json=job_manifest("one"))
    assert code == 201
    assert made["metadata"]["namespace"] == NAMESPACE
    assert made["metadata"]["uid"]
    assert made["metadata"]["resourceVersion"]
    assert made["metadata"]["generation"] == 1
    code, again = await _call(cluster, "POST", FTJS, json=job_manifest("one"))
    assert (code, again["reason"]) == (409, "AlreadyExists")
    generated = {"metadata": {"generateName": "cm-"}, "data": {}}
    code, made = await _call(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", json=generated)
    assert code == 201
    assert made["metadata"]["name"].startswith("cm-")
    assert len(made["metadata"]["name"]) == 8


async def test_stale_writes_conflict_and_failed_json_patch_tests_are_unprocessable(cluster: ApiEmulator) -> None:
    _, made = await _call(cluster, "POST", FTJS, json=job_manifest("two"))
    stale = made["metadata"]["resourceVersion"]
    await _call(cluster, "PATCH", f"{FTJS}/two", json={"spec": {"maxRetries": 1}}, headers=MERGE)
    guarded = {"metadata": {"resourceVersion": stale}, "spec": {"maxRetries": 3}}
    code, refused = await _call(cluster, "PATCH", f"{FTJS}/two", json=guarded, headers=MERGE)
    assert (code, refused["reason"]) == (409, "Conflict")
    test_op = [{"op": "test", "path": "/metadata/resourceVersion", "value": stale}]
    code, _ = await _call(cluster, "PATCH", f"{FTJS}/two", json=test_op, headers=JSON_PATCH)
    assert code == 422


async def test_status_subresource_separates_spec_and_status(cluster: ApiEmulator) -> None:
    await _call(cluster, "POST", FTJS, json=job_manifest("three"))
    await _call(cluster, "PATCH", f"{FTJS}/three", json={"status": {"phase": "Running"}}, headers=MERGE)
    assert "status" not in (cluster.live(FTJ, NAMESPACE, "three") or {})
    body = {"status": {"phase": "Running"}, "spec": {"maxRetries": 9}}
    _, patched = await _call(cluster, "PATCH", f"{FTJS}/three/status", json=body, headers=MERGE)
    assert patched["status"] == {"phase": "Running"}
    assert patched["spec"].get("maxRetries") is None
    assert patched["metadata"]["generation"] == 1
    _, patched = await _call(cluster, "PATCH", f"{FTJS}/three", json={"spec": {"maxRetries": 4}}, headers=MERGE)
    assert patched["metadata"]["generation"] == 2


async def test_schema_violations_are_422_with_one_cause_per_field(cluster: ApiEmulator) -> None:
    bad = job_manifest("four", maxRetries=99, trainingFile="ftp://nope")
    code, refused = await _call(cluster, "POST", FTJS, json=bad)
    assert code == 422
    assert sorted(c["field"] for c in refused["details"]["causes"]) == ["spec.maxRetries", "spec.trainingFile"]


async def test_deleting_an_owner_collects_its_dependents_and_jobs_orphan_by_default(cluster: ApiEmulator) -> None:
    _, owner = await _call(cluster, "POST", FTJS, json=job_manifest("five"))
    reference = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "name": "five",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    child = {"metadata": {"name": "five-cm", "ownerReferences": [reference]}, "data": {}}
    await _call(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", json=child)
    _, job = await _call(
        cluster,
        "POST",
        f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
        json={"metadata": {"name": "five-job"}, "spec": {}},
    )
    job_ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "five-job",
        "uid": job["metadata"]["uid"],
        "controller": True,
    }
    pod = {"metadata": {"name": "five-pod", "ownerReferences": [job_ref]}, "spec": {"containers": []}}
    await _call(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod)

    await _call(cluster, "DELETE", f"{FTJS}/five")
    await wait_for(lambda: cluster.live(CONFIGMAPS, NAMESPACE, "five-cm") is None, what="the dependent collected")
    await _call(cluster, "DELETE", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/five-job")  # no propagationPolicy
    await asyncio.sleep(0.05)
    orphan = cluster.live(PODS, NAMESPACE, "five-pod")
    assert orphan is not None
    assert orphan["metadata"]["ownerReferences"] == []
    assert cluster.live(JOBS, NAMESPACE, "five-job") is None


async def test_a_watch_from_a_resource_version_replays_only_later_events(cluster: ApiEmulator) -> None:
    _, first = await _call(cluster, "POST", FTJS, json=job_manifest("six"))
    await _call(cluster, "POST", FTJS, json=job_manifest("seven"))
    since = first["metadata"]["resourceVersion"]
    async with cluster.get(f"{FTJS}?watch=true&resourceVersion={since}") as stream:
        line = await asyncio.wait_for(stream.content.readline(), 2)
    event = json.loads(line)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "seven")


async def test_lists_have_a_kind_and_honour_label_selectors(cluster: ApiEmulator) -> None:
    for name, team in (("a", "x"), ("b", "y")):
        manifest = job_manifest(name)
        manifest["metadata"]["labels"] = {"team": team}
        await _call(cluster, "POST", FTJS, json=manifest)
    _, listed = await _call(cluster, "GET", f"{FTJS}?labelSelector=team%20in%20(y,z)")
    assert listed["kind"] == "FineTuneJobList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["b"]
