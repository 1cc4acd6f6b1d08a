"""What a user of the sandbox sees with `kubectl get` and `kubectl describe`, read the way kubectl reads it.

Everything goes over the sandbox's HTTPS API with its kubeconfig (the operator's own client, as
kubectl would connect), never into the emulator's memory: the tests see what a user sees. The
sandbox's API, Job controller and pod runner live in the test's event loop, so nothing here
blocks it: waits sleep asynchronously and kubectl runs as an asyncio subprocess.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune_operator.kube.client import KubeClient
from kubetune_operator.kube.connection import Connection
from kubetune_operator.kube.resources import BASEMODELTEMPLATES, EVENTS, FINETUNEJOBS, JOBS, PODS
from kubetune_operator.render.labels import ATTEMPT_LABEL, COMPONENT_LABEL, JOB_LABEL, TRAINER
from kubetune_trainer.contract import Result

from ..kubectl import kubectl

Json = dict[str, Any]


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


class UserView:
    def __init__(self, client: KubeClient, *, kubeconfig: Path, operator_log: Path, namespace: str = "default"):
        self.client = client
        self.kubeconfig = kubeconfig
        self.operator_log = operator_log
        self.namespace = namespace

    async def create(self, manifest: Json) -> None:
        """Create a FineTuneJob (in this view's namespace) or a BaseModelTemplate (cluster-scoped)."""
        if manifest["kind"] == "FineTuneJob":
            await self.client.create(FINETUNEJOBS, manifest, namespace=self.namespace)
        else:
            await self.client.create(BASEMODELTEMPLATES, manifest, namespace=None)

    async def job(self, name: str) -> Json:
        job = await self.client.get(FINETUNEJOBS, namespace=self.namespace, name=name)
        assert job is not None, f"FineTuneJob {name} does not exist"
        return job

    async def status(self, name: str) -> Json:
        status: Json = (await self.job(name)).get("status", {})
        return status

    async def wait_until(
        self, name: str, check: Callable[[Json], bool], *, timeout: float, what: str = "the condition"
    ) -> Json:
        """Poll the job's status every 0.3 s until `check(status)`; on timeout fail with the status and operator log."""
        deadline = time.monotonic() + timeout
        status: Json = {}
        while time.monotonic() < deadline:
            job = await self.client.get(FINETUNEJOBS, namespace=self.namespace, name=name)
            status = (job or {}).get("status", {})
            if check(status):
                return status
            await asyncio.sleep(0.3)
        log = self.operator_log.read_text(errors="replace")[-4000:] if self.operator_log.exists() else "(no log)"
        raise AssertionError(f"{name}: {what} not reached in {timeout:.0f}s; status {status}\noperator log:\n{log}")

    async def wait_for_phase(self, name: str, *phases: str, timeout: float = 180.0) -> Json:
        return await self.wait_until(
            name, lambda s: s.get("phase") in phases, timeout=timeout, what=f"phase {' or '.join(phases)}"
        )

    async def events(self, name: str, *, until: str | None = None, timeout: float = 30.0) -> list[Event]:
        """The job's Events in the order they were posted, as `kubectl describe ftj` lists them.

        `until`: wait for an Event with that reason first. The operator posts a job's last Event
        (Completed, the failure) just after writing the phase a test waits for.
        """
        deadline = time.monotonic() + timeout
        while True:
            items = await self.client.list(EVENTS, namespace=self.namespace)
            events = [
                Event(item.get("type", ""), item.get("reason", ""), item.get("message", ""))
                for item in items
                if item.get("involvedObject", {}).get("name") == name
                and item.get("involvedObject", {}).get("kind") == "FineTuneJob"
            ]
            if until is None or until in reasons(events) or time.monotonic() > deadline:
                return events
            await asyncio.sleep(0.3)

    async def pods(self, name: str, *, component: str | None = None, attempt: int | None = None) -> list[Json]:
        selector = [f"{JOB_LABEL}={name}"]
        if component is not None:
            selector.append(f"{COMPONENT_LABEL}={component}")
        if attempt is not None:
            selector.append(f"{ATTEMPT_LABEL}={attempt}")
        return await self.client.list(PODS, namespace=self.namespace, label_selector=",".join(selector))

    async def batch_jobs(self, name: str) -> list[Json]:
        return await self.client.list(JOBS, namespace=self.namespace, label_selector=f"{JOB_LABEL}={name}")

    async def trainer_results(self, name: str, *, attempt: int) -> list[Result]:
        """The Results attempt `attempt`'s trainer pods wrote to their termination log, as kubectl shows them."""
        results = []
        for pod in await self.pods(name, component=TRAINER, attempt=attempt):
            for container in pod.get("status", {}).get("containerStatuses", []):
                message = container.get("state", {}).get("terminated", {}).get("message")
                if message:
                    results.append(Result.from_termination_message(message))
        return results

    async def kubectl(self, *args: str) -> str:
        """The system kubectl against the sandbox; its output (a failure fails the test)."""
        code, text = await kubectl(self.kubeconfig, *args)
        assert code == 0, f"kubectl {' '.join(args)} failed ({code}):\n{text}"
        return text


@asynccontextmanager
async def user_view(kubeconfig: Path, *, operator_log: Path, namespace: str = "default") -> AsyncIterator[UserView]:
    connection = Connection.from_env({"KUBECONFIG": str(kubeconfig)})
    async with KubeClient(connection) as client:
        yield UserView(client, kubeconfig=kubeconfig, operator_log=operator_log, namespace=namespace)


def stage_names(status: Json) -> list[str]:
    return [record["name"] for record in status.get("stages", [])]


def reasons(events: list[Event]) -> list[str]:
    return [event.reason for event in events]
