"""The emulator's pod semantics the sandbox needs, checked over HTTP and with the system kubectl.

Graceful deletion (a deleted pod stays, marked, until its kubelet deletes it with grace 0), the
eviction subresource and the log subresource (`kubectl logs`).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from kubetune_sandbox.emulator import PODS, ApiEmulator

from ..kubectl import kubectl

NS = "default"
POD_URL = f"/api/v1/namespaces/{NS}/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}


class PodWorld:
    """The callbacks a kubelet would answer: what was evicted, and each pod's log so far."""

    def __init__(self) -> None:
        self.evicted: list[tuple[str, str]] = []
        self.logs: dict[tuple[str, str], str] = {}

    async def evict(self, namespace: str, name: str) -> None:
        self.evicted.append((namespace, name))

    def log(self, namespace: str, name: str) -> str | None:
        return self.logs.get((namespace, name))


@pytest.fixture
def world() -> PodWorld:
    return PodWorld()


@pytest.fixture
async def api(world: PodWorld) -> AsyncIterator[ApiEmulator]:
    emulator = ApiEmulator(graceful_pod_deletion=True, on_eviction=world.evict, pod_log=world.log)
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        yield emulator


async def _call(api: ApiEmulator, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with api.request(method, url, **kwargs) as answer:
        return answer.status, await answer.json()


def _pod(name: str, *, containers: tuple[str, ...] = ("trainer",), grace: int | None = 45) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "trainer"} for c in containers]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def _running_pod(api: ApiEmulator, name: str, **kwargs: Any) -> dict[str, Any]:
    """A pod a kubelet took: created, then its status says Running."""
    code, _ = await _call(api, "POST", POD_URL, json=_pod(name, **kwargs))
    assert code == 201
    code, running = await _call(
        api, "PATCH", f"{POD_URL}/{name}/status", json={"status": {"phase": "Running"}}, headers=MERGE
    )
    assert code == 200
    return dict(running)


async def test_a_running_pod_stays_marked_until_its_kubelet_deletes_it_with_grace_zero(api: ApiEmulator) -> None:
    await _running_pod(api, "p", grace=45)
    code, marked = await _call(api, "DELETE", f"{POD_URL}/p")
    assert code == 200
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 45
    assert marked["metadata"]["deletionTimestamp"]
    # The kubelet writes the final status while the pod terminates: the pod must stay for it.
    code, _ = await _call(api, "PATCH", f"{POD_URL}/p/status", json={"status": {"phase": "Failed"}}, headers=MERGE)
    assert code == 200
    assert (api.live(PODS, NS, "p") or {}).get("status") == {"phase": "Failed"}
    # A second user DELETE does not shorten the kubelet's work; grace 0 (the kubelet's) ends it.
    await _call(api, "DELETE", f"{POD_URL}/p")
    assert api.live(PODS, NS, "p") is not None
    code, _ = await _call(api, "DELETE", f"{POD_URL}/p", json={"gracePeriodSeconds": 0})
    assert code == 200
    assert api.live(PODS, NS, "p") is None


async def test_a_later_delete_with_a_shorter_grace_moves_the_deadline_in(api: ApiEmulator) -> None:
    await _running_pod(api, "p", grace=45)
    _, marked = await _call(api, "DELETE", f"{POD_URL}/p")
    first_deadline = marked["metadata"]["deletionTimestamp"]
    await asyncio.sleep(1.1)  # timestamps are whole seconds: the second DELETE comes a second later
    code, shortened = await _call(api, "DELETE", f"{POD_URL}/p", json={"gracePeriodSeconds": 5})
    assert code == 200
    assert shortened["metadata"]["deletionGracePeriodSeconds"] == 5
    # As the API server: counted from the first DELETE (its deadline less its grace), whenever this one came.
    moved_in = datetime.datetime.fromisoformat(first_deadline) - datetime.timedelta(seconds=40)
    assert datetime.datetime.fromisoformat(shortened["metadata"]["deletionTimestamp"]) == moved_in
    _, kept = await _call(api, "DELETE", f"{POD_URL}/p", json={"gracePeriodSeconds": 20})  # longer: no effect
    assert kept["metadata"]["deletionGracePeriodSeconds"] == 5
    # Forced (`kubectl delete --force --grace-period=0`): the kubelet is told grace 0, then the pod goes.
    code, _ = await _call(api, "DELETE", f"{POD_URL}/p", json={"gracePeriodSeconds": 0})
    assert code == 200
    assert api.live(PODS, NS, "p") is None


async def test_the_grace_comes_from_the_request_then_the_pod_then_thirty_seconds(api: ApiEmulator) -> None:
    await _running_pod(api, "asked")
    _, marked = await _call(api, "DELETE", f"{POD_URL}/asked", json={"gracePeriodSeconds": 5})
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 5
    await _running_pod(api, "query")
    _, marked = await _call(api, "DELETE", f"{POD_URL}/query?gracePeriodSeconds=7")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 7
    await _running_pod(api, "default-grace", grace=None)
    _, marked = await _call(api, "DELETE", f"{POD_URL}/default-grace")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30


async def test_pods_with_nothing_to_stop_go_at_once(api: ApiEmulator) -> None:
    await _call(api, "POST", POD_URL, json=_pod("never-ran"))  # no kubelet took it: no nodeName, no phase
    await _call(api, "DELETE", f"{POD_URL}/never-ran")
    assert api.live(PODS, NS, "never-ran") is None
    await _running_pod(api, "done")
    await _call(api, "PATCH", f"{POD_URL}/done/status", json={"status": {"phase": "Succeeded"}}, headers=MERGE)
    await _call(api, "DELETE", f"{POD_URL}/done")
    assert api.live(PODS, NS, "done") is None


async def test_garbage_collection_of_a_pod_is_graceful_too(api: ApiEmulator) -> None:
    _, owner = await _call(api, "POST", f"/api/v1/namespaces/{NS}/configmaps", json={"metadata": {"name": "owner"}})
    pod = _pod("owned")
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    pod["metadata"]["ownerReferences"] = [reference]
    await _call(api, "POST", POD_URL, json=pod)
    await _call(api, "PATCH", f"{POD_URL}/owned/status", json={"status": {"phase": "Running"}}, headers=MERGE)
    await _call(api, "DELETE", f"/api/v1/namespaces/{NS}/configmaps/owner")
    for _ in range(100):
        if (api.live(PODS, NS, "owned") or {}).get("metadata", {}).get("deletionTimestamp"):
            break
        await asyncio.sleep(0.01)
    assert (api.live(PODS, NS, "owned") or {})["metadata"]["deletionGracePeriodSeconds"] == 45


async def test_eviction_calls_the_callback_and_answers_201(api: ApiEmulator, world: PodWorld) -> None:
    await _running_pod(api, "victim")
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "victim", "namespace": NS}}
    code, answer = await _call(api, "POST", f"{POD_URL}/victim/eviction", json=eviction)
    assert (code, answer["status"]) == (201, "Success")
    assert world.evicted == [(NS, "victim")]
    code, answer = await _call(api, "POST", f"{POD_URL}/ghost/eviction", json=eviction)
    assert (code, answer["reason"]) == (404, "NotFound")


async def test_eviction_without_a_callback_deletes_the_pod_gracefully() -> None:
    emulator = ApiEmulator(graceful_pod_deletion=True)
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        await _running_pod(emulator, "victim")
        code, _ = await _call(emulator, "POST", f"{POD_URL}/victim/eviction", json={"kind": "Eviction"})
        assert code == 201
        assert (emulator.live(PODS, NS, "victim") or {})["metadata"]["deletionGracePeriodSeconds"] == 45


async def test_kubectl_logs_reads_the_log_callback(api: ApiEmulator, world: PodWorld) -> None:
    await _running_pod(api, "p")
    await _running_pod(api, "pair", containers=("trainer", "sidecar"))
    code, output = await kubectl(api.url, "logs", "p")
    assert code != 0
    assert 'container "trainer" in pod "p" is waiting to start' in output
    world.logs[(NS, "p")] = "step 1 loss 2.0\nstep 2 loss 1.5\nstep 3 loss 1.2\n"
    world.logs[(NS, "pair")] = "hello\n"
    assert await kubectl(api.url, "logs", "p") == (0, world.logs[(NS, "p")])
    assert await kubectl(api.url, "logs", "p", "--tail=2") == (0, "step 2 loss 1.5\nstep 3 loss 1.2\n")
    assert await kubectl(api.url, "logs", "pair", "-c", "sidecar") == (0, "hello\n")
    code, output = await kubectl(api.url, "logs", "p", "-c", "nope")
    assert code != 0
    assert "container nope is not valid for pod p" in output
    code, output = await kubectl(api.url, "logs", "ghost")
    assert code != 0
    assert 'pods "ghost" not found' in output


async def test_kubectl_delete_pod_waits_for_the_kubelet_to_finish(api: ApiEmulator) -> None:
    await _running_pod(api, "p", grace=45)
    seen: list[dict[str, Any]] = []

    async def kubelet() -> None:
        """Stops the pod's containers when it is marked, then deletes it for good (grace 0)."""
        while (pod := api.live(PODS, NS, "p")) is None or not pod["metadata"].get("deletionTimestamp"):
            await asyncio.sleep(0.02)
        seen.append(pod)
        await _call(api, "PATCH", f"{POD_URL}/p/status", json={"status": {"phase": "Failed"}}, headers=MERGE)
        await _call(api, "DELETE", f"{POD_URL}/p", json={"gracePeriodSeconds": 0})

    player = asyncio.create_task(kubelet())
    code, output = await kubectl(api.url, "delete", "pod", "p", "--grace-period=20", "--timeout=20s")
    await player
    assert (code, output.strip()) == (0, 'pod "p" deleted')
    assert seen[0]["metadata"]["deletionGracePeriodSeconds"] == 20
    assert api.live(PODS, NS, "p") is None


async def test_kubectl_logs_follow_streams_new_lines_until_the_pod_ends(api: ApiEmulator, world: PodWorld) -> None:
    await _running_pod(api, "p")
    world.logs[(NS, "p")] = "step 1\n"
    following = asyncio.create_task(kubectl(api.url, "logs", "-f", "p"))
    await asyncio.sleep(1.0)
    assert not following.done()  # still following a running pod
    world.logs[(NS, "p")] += "step 2\n"
    await asyncio.sleep(1.0)
    world.logs[(NS, "p")] += "done\n"
    await _call(api, "PATCH", f"{POD_URL}/p/status", json={"status": {"phase": "Succeeded"}}, headers=MERGE)
    assert await asyncio.wait_for(following, 10) == (0, "step 1\nstep 2\ndone\n")
    code, output = await kubectl(api.url, "logs", "-f", "ghost")
    assert code != 0
    assert 'pods "ghost" not found' in output
