"""Common journeys through the operator, so each behaviour test starts where it matters."""

from __future__ import annotations

from typing import Any

from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import NAMESPACE, Actors, preflight_passed, wait_for
from .conftest import JOBS, job_manifest, status_of


async def pass_preflight(
    cluster: ApiEmulator, actors: Actors, name: str, *, until_attempt: bool = True, **spec: Any
) -> None:
    """Apply the job and let its preflight succeed; returns once attempt 1's Job exists (if `until_attempt`)."""
    await actors.apply_job(job_manifest(name, **spec))
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, f"{name}-preflight"), what="the preflight Job")
    (pod,) = await actors.start_pods(f"{name}-preflight")
    await actors.terminate(pod, exit_code=0, message=preflight_passed())
    await actors.job_condition(f"{name}-preflight", "Complete")
    if until_attempt:
        await wait_for(lambda: cluster.live(JOBS, NAMESPACE, f"{name}-a1"), what="attempt 1's Job")


async def run_attempt(cluster: ApiEmulator, actors: Actors, name: str, attempt: int) -> list[str]:
    """Start attempt `attempt`'s pods and let them run; returns the pod names."""
    job = f"{name}-a{attempt}"
    await wait_for(lambda: cluster.live(JOBS, NAMESPACE, job), what=f"Job {job}")
    pods = await actors.start_pods(job)
    for pod in pods:
        await actors.run(pod)
    await wait_for(
        lambda: (
            status_of(cluster, name).get("phase") == "Running" and status_of(cluster, name).get("attempt") == attempt
        ),
        what=f"attempt {attempt} Running",
    )
    return pods


async def to_running(cluster: ApiEmulator, actors: Actors, name: str, **spec: Any) -> list[str]:
    await pass_preflight(cluster, actors, name, **spec)
    return await run_attempt(cluster, actors, name, 1)


def error_of(cluster: ApiEmulator, name: str) -> dict[str, Any]:
    error: dict[str, Any] = status_of(cluster, name).get("error") or {}
    return error


async def until_phase(cluster: ApiEmulator, name: str, phase: str, *, timeout: float = 30.0) -> dict[str, Any]:
    status: dict[str, Any] = await wait_for(
        lambda: status_of(cluster, name).get("phase") == phase and status_of(cluster, name),
        timeout=timeout,
        what=f"{name} phase {phase} (now {status_of(cluster, name).get('phase')})",
    )
    return status
