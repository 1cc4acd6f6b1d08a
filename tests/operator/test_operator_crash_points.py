"""Crash-point enumeration: stop the operator right after each of its API calls while it creates a job.

For k = 1, 2, ... the operator is cancelled just after its k-th write reached the API (the write
took effect, the operator never saw the answer), then a fresh operator starts. Every run must
converge to the same children, each created exactly once, and a restart that replays every
event must write nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import kmock
import pytest

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, Actors, preflight_passed, wait_for
from .conftest import (
    CONFIGMAPS,
    FTJ,
    JOBS,
    OPERATOR_AGENT,
    SERVICES,
    RunningOperator,
    StartOperator,
    job_manifest,
    status_of,
)

ROLES = kmock.resource("rbac.authorization.k8s.io/v1/roles")
ROLEBINDINGS = kmock.resource("rbac.authorization.k8s.io/v1/rolebindings")
ACCOUNTS = kmock.resource("v1/serviceaccounts")
CHILD_KINDS = (JOBS, CONFIGMAPS, SERVICES, ACCOUNTS, ROLES, ROLEBINDINGS)


@pytest.fixture
async def preflights_pass(cluster: ApiEmulator, actors: Actors) -> AsyncIterator[None]:
    """Plays the Job controller and kubelet for every preflight: its pod runs and passes."""
    seen: set[str] = set()

    async def play() -> None:
        while True:
            for job in cluster.live_objects(JOBS, NAMESPACE):
                name = job["metadata"]["name"]
                if name.endswith("-preflight") and name not in seen:
                    seen.add(name)
                    (pod,) = await actors.start_pods(name)
                    await actors.terminate(pod, exit_code=0, message=preflight_passed())
                    await actors.job_condition(name, "Complete")
            await asyncio.sleep(0.02)

    task = asyncio.create_task(play())
    yield
    if task.done():
        task.result()  # the player failed: say why
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _children(cluster: ApiEmulator, name: str) -> dict[tuple[str, str], int]:
    """Each child of job `name`: how many times it was created (history versions that follow a deletion)."""
    found = {}
    for (resource, namespace, child), obj in cluster.objects.items():
        if namespace != NAMESPACE or not child.startswith(f"{name}-") or resource not in CHILD_KINDS:
            continue
        creations = sum(
            1 for i, v in enumerate(obj.history) if v is not None and (i == 0 or obj.history[i - 1] is None)
        )
        found[(resource.plural or "", child)] = creations if not obj.deleted else -1
    return found


def _converged(cluster: ApiEmulator, name: str) -> bool:
    status = status_of(cluster, name)
    return (
        status.get("phase") == "Queued"
        and status.get("attempt") == 1
        and cluster.live(JOBS, NAMESPACE, f"{name}-a1") is not None
    )


def _writes(cluster: ApiEmulator) -> int:
    return len(cluster.writes(user_agent=OPERATOR_AGENT))


async def _run_with_crash_at(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator, *, name: str, crash_at: int
) -> bool:
    """One run: True when the operator was stopped after its `crash_at`-th write, False when it never got there."""
    first = await start_operator()
    baseline = _writes(cluster)

    async def stop_after_kth(request: kmock.Request) -> None:
        # Runs after the write took effect and before its answer leaves: the operator never sees it.
        if request.headers.get("User-Agent", "").startswith(OPERATOR_AGENT) and _writes(cluster) - baseline == crash_at:
            await first.stop()

    cluster.after_write.append(stop_after_kth)
    try:
        await actors.apply_job(job_manifest(name))
        await wait_for(lambda: first.done or _converged(cluster, name), what=f"{name} to converge or crash")
        await asyncio.sleep(0.1)  # a crash right after the last write lands here too
    finally:
        cluster.after_write.remove(stop_after_kth)
    crashed = first.done
    await first.stop()
    if crashed:
        second: RunningOperator = await start_operator()
        await wait_for(
            lambda: _converged(cluster, name),
            what=f"{name} to converge after the restart ({status_of(cluster, name)}; {_children(cluster, name)})",
        )
        await asyncio.sleep(0.3)
        await second.stop()
    return crashed


@pytest.mark.usefixtures("preflights_pass")
async def test_every_crash_point_converges_without_duplicate_children(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    reference = "crash-ref"
    assert not await _run_with_crash_at(cluster, actors, start_operator, name=reference, crash_at=10_000)
    expected = {(kind, child.removeprefix(reference)) for kind, child in _children(cluster, reference)}

    crash_points = 0
    for k in range(1, 40):
        name = f"crash-{k}"
        if not await _run_with_crash_at(cluster, actors, start_operator, name=name, crash_at=k):
            break
        crash_points += 1
        children = _children(cluster, name)
        assert {(kind, child.removeprefix(name)) for kind, child in children} == expected, f"crash after write {k}"
        assert set(children.values()) == {1}, f"crash after write {k}: a child was created twice: {children}"
    assert crash_points >= 8, f"only {crash_points} API calls in the create path?"

    # A restart replays every object as ADDED: a converged job must cause no write at all.
    before = _writes(cluster)
    replay = await start_operator()
    await asyncio.sleep(1.0)
    await replay.stop()
    assert _writes(cluster) == before


async def test_a_replayed_watch_event_creates_nothing(
    cluster: ApiEmulator, actors: Actors, start_operator: StartOperator
) -> None:
    await start_operator()
    await actors.apply_job(job_manifest("again"))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, "again-preflight"), what="the preflight Job")
    await asyncio.sleep(0.3)
    before = _writes(cluster)
    body = cluster.live(FTJ, NAMESPACE, "again")
    assert body is not None
    cluster.replay(FTJ, body)  # the same object, same resourceVersion, delivered again
    await asyncio.sleep(0.5)
    assert _writes(cluster) == before
