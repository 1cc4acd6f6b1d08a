"""A dropped connection while the Job controller reads a Job is tried again; it never ends the controller.

The Job controller is one task for every Job of the sandbox: had it ended, no Job would ever get
a pod again and every FineTuneJob would wait forever with no word why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import kmock

from kubetune_operator.kube.connection import Connection
from kubetune_operator.kube.resources import JOBS, ApiResource
from kubetune_sandbox.client import JsonObject, SandboxClient
from kubetune_sandbox.job_controller import JobController

from .one_node import NS, Node, condition_types, eventually, one_node, python


class DropsTheFirstJobRead(SandboxClient):
    """The API server's connection drops once, under the first read of a Job (the network's failure, not ours)."""

    dropped = 0

    async def get(self, resource: ApiResource, *, namespace: str, name: str) -> JsonObject | None:
        if resource == JOBS and not self.dropped:
            self.dropped += 1
            raise aiohttp.ServerDisconnectedError()
        return await super().get(resource, namespace=namespace, name=name)


async def run_job_to_completion(node: Node, client: SandboxClient, job: str) -> None:
    """A one-pod Job through a Job controller on `client`, which must still be running when the Job completes."""
    controller = asyncio.create_task(JobController(client).run())
    try:
        await node.create_job(job, python("print('done')"))

        def complete() -> bool:
            return ("Complete", "True") in [(kind, status) for kind, status, _ in condition_types(node.job(job))]

        await eventually(complete, what=f"Job {job} to complete", timeout=20)
        assert not controller.done()
    finally:
        controller.cancel()
        await asyncio.gather(controller, return_exceptions=True)


async def test_a_job_read_that_drops_is_tried_again_and_the_job_completes(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        connection = Connection(server=str(node.emulator.url))
        async with DropsTheFirstJobRead(connection) as flaky:
            await run_job_to_completion(node, flaky, "steady")
            assert flaky.dropped == 1


class _AppliedThenDropped:
    """A request the server applies, whose answer is then lost (the connection drops on the way back)."""

    def __init__(self, request: Any) -> None:
        self._request = request

    async def __aenter__(self) -> Any:
        async with self._request as response:
            await response.read()
        raise aiohttp.ServerDisconnectedError()

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class _Session:
    """The client's session, but the first pod POST is applied and its answer lost."""

    def __init__(self, session: aiohttp.ClientSession, owner: LosesTheFirstPodCreateAnswer) -> None:
        self._session, self._owner = session, owner

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        request = self._session.request(method, path, **kwargs)
        if method == "POST" and path.endswith("/pods") and not self._owner.lost:
            self._owner.lost += 1
            return _AppliedThenDropped(request)
        return request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class LosesTheFirstPodCreateAnswer(SandboxClient):
    lost = 0

    def _open(self) -> Any:
        return _Session(super()._open(), self)


async def test_a_pod_create_whose_answer_is_lost_makes_no_second_pod(tmp_path: Path) -> None:
    """A pod made with generateName is not created again blindly: the controller lists and sees it."""
    async with one_node(tmp_path, controller=False) as node:
        connection = Connection(server=str(node.emulator.url))
        async with LosesTheFirstPodCreateAnswer(connection) as flaky:
            await run_job_to_completion(node, flaky, "once")
            assert flaky.lost == 1
            pod_creates = [
                r for r in node.emulator.writes() if r.method.value == "POST" and r.url.path.endswith("/pods")
            ]
            assert len(pod_creates) == 1  # a blind retry would have made a second pod for one completion


class DeletesTheJobBeforeItsStatusWrite(SandboxClient):
    """The Job is deleted (by the operator, say) after the controller read it and before it wrote its status."""

    deleted = 0

    async def patch_status(
        self, resource: ApiResource, status: JsonObject, *, namespace: str | None, name: str
    ) -> JsonObject:
        if resource == JOBS and not self.deleted:
            self.deleted += 1
            await self.delete(JOBS, namespace=namespace, name=name)
        return await super().patch_status(resource, status, namespace=namespace, name=name)


async def test_a_job_deleted_during_a_pass_ends_the_pass_quietly(tmp_path: Path) -> None:
    """The real Job controller drops a Job deleted under it; the sandbox's pass must not fail on its 404."""
    async with one_node(tmp_path, controller=False) as node:
        connection = Connection(server=str(node.emulator.url))
        async with DeletesTheJobBeforeItsStatusWrite(connection) as racing:
            await node.create_job("brief", python("print('done')"))
            await JobController(racing).reconcile(NS, "brief")  # must not raise the 404
            assert racing.deleted == 1
            assert node.emulator.live(kmock.resource("batch/v1/jobs"), NS, "brief") is None
