"""`kubectl get pods`, `get jobs` and `get events` against the emulator show the columns a cluster shows.

The statuses are the ones the sandbox's kubelet and Job controller write; the expected text is what
kubectl prints for them against a real API server.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from kubetune_sandbox.emulator import ApiEmulator

from ..kubectl import kubectl

NS = "default"
MERGE = {"Content-Type": "application/merge-patch+json"}
RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


@pytest.fixture
async def api() -> AsyncIterator[ApiEmulator]:
    emulator = ApiEmulator(graceful_pod_deletion=True)
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        yield emulator


async def _object(api: ApiEmulator, collection: str, body: dict[str, Any], status: dict[str, Any] | None) -> None:
    async with api.post(collection, json=body) as made:
        assert made.status == 201, await made.text()
    if status is not None:
        path = f"{collection}/{body['metadata']['name']}/status"
        async with api.patch(path, json={"status": status}, headers=MERGE) as patched:
            assert patched.status == 200, await patched.text()


async def _pod(api: ApiEmulator, name: str, status: dict[str, Any] | None) -> None:
    body = {"metadata": {"name": name}, "spec": {"nodeName": "sandbox", "containers": [{"name": "main", "image": "x"}]}}
    await _object(api, f"/api/v1/namespaces/{NS}/pods", body, status)


def _container(state: dict[str, Any], *, ready: bool = False, restarts: int = 0) -> dict[str, Any]:
    return {"containerStatuses": [{"name": "main", "ready": ready, "restartCount": restarts, "state": state}]}


async def test_kubectl_get_pods_shows_ready_status_and_restarts(api: ApiEmulator) -> None:
    await _pod(api, "a-pending", None)
    await _pod(api, "b-running", {"phase": "Running", "podIP": "127.0.0.1", **_container(RUNNING, ready=True)})
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    await _pod(api, "c-done", {"phase": "Succeeded", **_container(done)})
    crashed = {"terminated": {"exitCode": 1, "reason": "Error"}}
    await _pod(api, "d-error", {"phase": "Failed", **_container(crashed, restarts=2)})
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "hf" not found'}}
    await _pod(api, "e-waiting", {"phase": "Pending", **_container(waiting)})
    await _pod(api, "f-going", {"phase": "Running", **_container(RUNNING, ready=True)})
    async with api.delete(f"/api/v1/namespaces/{NS}/pods/f-going") as deleted:
        assert deleted.status == 200

    code, output = await kubectl(api.url, "get", "pods")
    assert code == 0, output
    lines = [line.split() for line in output.splitlines()]
    assert lines[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line[:4] for line in lines[1:]] == [
        ["a-pending", "0/1", "Pending", "0"],
        ["b-running", "1/1", "Running", "0"],
        ["c-done", "0/1", "Completed", "0"],
        ["d-error", "0/1", "Error", "2"],
        ["e-waiting", "0/1", "CreateContainerConfigError", "0"],
        ["f-going", "1/1", "Terminating", "0"],
    ]
    code, output = await kubectl(api.url, "get", "pod", "b-running", "-o", "wide")
    assert output.splitlines()[0].split()[-2:] == ["IP", "NODE"]
    assert output.splitlines()[1].split()[-2:] == ["127.0.0.1", "sandbox"]


async def test_kubectl_get_jobs_shows_status_completions_and_duration(api: ApiEmulator) -> None:
    jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]}}

    def job(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"completions": 2, "parallelism": 2, "template": template}}

    start, end = "2026-01-01T00:00:00Z", "2026-01-01T00:01:30Z"
    await _object(api, jobs, job("a-running"), {"startTime": start, "active": 2, "succeeded": 1})
    complete = [{"type": "Complete", "status": "True"}]
    await _object(
        api,
        jobs,
        job("b-complete"),
        {"startTime": start, "completionTime": end, "succeeded": 2, "conditions": complete},
    )
    failed = [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]
    await _object(api, jobs, job("c-failed"), {"startTime": start, "failed": 1, "conditions": failed})
    await _object(api, jobs, job("d-suspended"), {"conditions": [{"type": "Suspended", "status": "True"}]})

    code, output = await kubectl(api.url, "get", "jobs")
    assert code == 0, output
    lines = [line.split() for line in output.splitlines()]
    assert lines[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert [line[:3] for line in lines[1:]] == [
        ["a-running", "Running", "1/2"],
        ["b-complete", "Complete", "2/2"],
        ["c-failed", "Failed", "0/2"],
        ["d-suspended", "Suspended", "0/2"],
    ]
    assert lines[2][3] == "90s"


async def test_kubectl_get_events_shows_type_reason_object_and_message(api: ApiEmulator) -> None:
    events = f"/api/v1/namespaces/{NS}/events"
    now = datetime.datetime.now(tz=datetime.UTC)
    # Ages a loaded machine cannot move across a printed boundary: past 10 minutes they print whole minutes.
    recent = (now - datetime.timedelta(minutes=20, seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    older = (now - datetime.timedelta(minutes=30, seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = {"apiVersion": "kubetune.dev/v1alpha1", "kind": "FineTuneJob", "name": "quickstart", "namespace": NS}
    kopf_event = {  # as the operator (kopf) posts them
        "metadata": {"name": "quickstart.1"},
        "involvedObject": job,
        "type": "Warning",
        "reason": "NoCheckpointLocation",
        "message": "no checkpoint location: set spec.checkpoint.uri\n",
        "source": {"component": "kubetune-operator"},
        "firstTimestamp": older,
        "lastTimestamp": recent,
        "count": 2,
    }
    await _object(api, events, kopf_event, None)
    series_event = {
        "metadata": {"name": "quickstart.2"},
        "involvedObject": job,
        "type": "Normal",
        "reason": "Completed",
        "message": "the job succeeded",
        "reportingController": "kubetune-operator",
        "eventTime": older.replace("Z", ".000000Z"),
    }
    await _object(api, events, series_event, None)

    code, output = await kubectl(api.url, "get", "events")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert lines[1].split(maxsplit=4) == [
        "20m",
        "Warning",
        "NoCheckpointLocation",
        "finetunejob/quickstart",
        "no checkpoint location: set spec.checkpoint.uri",
    ]
    assert lines[2].split(maxsplit=4) == ["30m", "Normal", "Completed", "finetunejob/quickstart", "the job succeeded"]
    code, output = await kubectl(api.url, "get", "events", "-o", "wide")
    assert code == 0, output
    wide = [line.split() for line in output.splitlines()]
    assert wide[0][-4:] == ["FIRST", "SEEN", "COUNT", "NAME"]
    assert wide[1][-3:] == ["30m", "2", "quickstart.1"]
    assert "kubetune-operator" in wide[1]
    # --sort-by asks for each row's whole object (includeObject=Object) and sorts the rows on it.
    code, output = await kubectl(api.url, "get", "events", "--sort-by=.metadata.name")
    assert code == 0, output
    assert [line.split()[2] for line in output.splitlines()[1:]] == ["NoCheckpointLocation", "Completed"]
    code, output = await kubectl(api.url, "get", "events", "--sort-by=.reason")
    assert code == 0, output
    assert [line.split()[2] for line in output.splitlines()[1:]] == ["Completed", "NoCheckpointLocation"]


async def test_kubectl_get_w_prints_every_change_in_the_same_columns(api: ApiEmulator) -> None:
    """`kubectl get pods -w`: the watch's events arrive as one-row Tables, so later rows keep the columns."""
    await _pod(api, "w-pod", None)
    watching = asyncio.create_task(kubectl(api.url, "get", "pods", "-w", "--request-timeout=4s"))
    await asyncio.sleep(1.5)
    running = {"phase": "Running", "podIP": "127.0.0.1", **_container(RUNNING, ready=True)}
    async with api.patch(
        f"/api/v1/namespaces/{NS}/pods/w-pod/status", json={"status": running}, headers=MERGE
    ) as patched:
        assert patched.status == 200, await patched.text()
    _, output = await watching
    lines = [line.split() for line in output.splitlines() if line.startswith(("NAME", "w-pod"))]
    assert lines[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line[:4] for line in lines[1:]] == [["w-pod", "0/1", "Pending", "0"], ["w-pod", "1/1", "Running", "0"]]


async def test_kubectl_get_namespaces_shows_each_with_an_age(api: ApiEmulator) -> None:
    await _pod(api, "a-pending", {"phase": "Pending"})
    api.namespaces.add("ml")

    code, output = await kubectl(api.url, "get", "namespaces")

    assert code == 0, output
    lines = [line.split() for line in output.splitlines()]
    assert lines[0][0] == "NAME"
    assert lines[0][-1] == "AGE"
    rows = {line[0]: line[-1] for line in lines[1:]}
    assert sorted(rows) == ["default", "ml"]
    assert all(re.fullmatch(r"\d+s", age) for age in rows.values()), output
