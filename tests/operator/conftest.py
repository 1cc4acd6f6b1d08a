"""The operator under test: the real kopf operator, in-process, against `ApiEmulator` over HTTP.

`cluster` is the emulator on a loopback port with the built-in resources (namespaces and
events included: kopf waits silently without them), our CRDs and the template catalog.
`start_operator` runs `run_operator` as a task and waits until kopf's watches are open (kopf's
ready flag comes before them); stopping cancels that task, which also stops our workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock
import kopf
import pytest

from kubetune_operator.handlers.runtime import RunOptions, kopf_settings, run_operator
from kubetune_operator.kube import Connection
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.settings import OperatorSettings
from kubetune_sandbox.emulator import ApiEmulator

from ..conftest import CATALOG_DIR, CRD_DIR, load_yaml
from .cluster_actors import NAMESPACE, Actors, wait_for

FTJ = kmock.resource("kubetune.dev/v1alpha1/finetunejobs")
TEMPLATES = kmock.resource("kubetune.dev/v1alpha1/basemodeltemplates")
JOBS = kmock.resource("batch/v1/jobs")
PODS = kmock.resource("v1/pods")
EVENTS = kmock.resource("v1/events")
CONFIGMAPS = kmock.resource("v1/configmaps")
SERVICES = kmock.resource("v1/services")
WATCHED = (FTJ, TEMPLATES, JOBS, PODS)
OPERATOR_AGENT = "kubetune-operator/"
KOPF_AGENT = "kopf/"

FAST = {
    "retry_backoff_seconds": 0.3,
    "retry_backoff_cap_seconds": 1.0,
    "template_retry_seconds": 0.3,
    "image_pull_grace_seconds": 0.5,
    "heartbeat_stale_seconds": 60.0,
}


@pytest.fixture
async def cluster() -> AsyncIterator[ApiEmulator]:
    async with ApiEmulator(namespaces={"default", NAMESPACE}) as emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        for path in sorted(CRD_DIR.glob("*.yaml")):
            emulator.register_crd(load_yaml(path))
        templates = [load_yaml(path) for path in sorted(CATALOG_DIR.glob("*.yaml"))]
        templates.append(_two_node_template(load_yaml(CATALOG_DIR / "llama-3.2-1b-instruct.yaml")))
        for template in templates:
            async with emulator.post("/apis/kubetune.dev/v1alpha1/basemodeltemplates", json=template) as made:
                assert made.status in {200, 201}, await made.text()
        yield emulator


def _two_node_template(template: dict[str, Any]) -> dict[str, Any]:
    """`two-nodes`: the Llama 3.2 1B template on 2 nodes x 2 GPUs, for multi-node jobs.

    They ask for `gpus: 4`: the GPU planner puts a 1B model on one GPU.
    """
    template = copy.deepcopy(template)
    template["metadata"] = {"name": "two-nodes"}
    template["spec"]["aliases"] = []
    template["spec"]["resources"].update(nodes=2, gpusPerNode=2)
    return template


@pytest.fixture
async def actors(cluster: ApiEmulator) -> AsyncIterator[Actors]:
    actors = Actors(cluster)
    yield actors
    await actors.aclose()


class RunningOperator:
    """The operator in its own thread and event loop.

    Not a task in the test's loop: when cancelled, kopf cancels every task created in its loop
    since it started ("hung tasks"), which in a shared loop includes the emulator's request
    handlers, and a client then waits forever for an answer.
    """

    def __init__(self, make: Callable[[], Awaitable[None]], metrics: OperatorMetrics) -> None:
        self.metrics = metrics
        self._make = make
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self._make())  # type: ignore[arg-type]
        self._started.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # surfaced by the fixture
            self.error = error
        finally:
            loop.close()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def cancel(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)

    async def stop(self) -> None:
        self.cancel()
        await asyncio.to_thread(self._thread.join, 30)


StartOperator = Callable[..., Awaitable[RunningOperator]]


def test_kopf_settings() -> kopf.OperatorSettings:
    settings = kopf_settings()
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    settings.queueing.idle_timeout = 1.0
    settings.queueing.exit_timeout = 0.5
    settings.watching.reconnect_backoff = 0.05
    return settings


def _watching(cluster: ApiEmulator, since: int) -> bool:
    seen = {request.resource for request in list(cluster)[since:] if request.action == kmock.action.WATCH}
    return all(any(resource == watched for watched in seen) for resource in WATCHED)


@pytest.fixture
async def start_operator(cluster: ApiEmulator) -> AsyncIterator[StartOperator]:
    running: list[RunningOperator] = []

    async def start(*, namespaces: tuple[str, ...] = (), **overrides: Any) -> RunningOperator:
        settings = OperatorSettings(**{**FAST, **overrides})
        metrics = OperatorMetrics()
        since = len(list(cluster))
        connection = Connection(server=str(cluster.url).rstrip("/"))
        operator = RunningOperator(
            lambda: run_operator(
                settings=settings,
                connection=connection,
                options=RunOptions(namespaces=namespaces, metrics_port=None),
                metrics=metrics,
                kopf_config=test_kopf_settings(),
            ),
            metrics,
        )
        running.append(operator)
        await wait_for(lambda: operator.done or _watching(cluster, since), what="the operator's watches")
        if operator.error is not None:
            raise operator.error
        return operator

    yield start
    for operator in running:
        await operator.stop()
    for operator in running:
        if operator.error is not None:
            raise operator.error


@pytest.fixture
async def operator(start_operator: StartOperator) -> RunningOperator:
    return await start_operator()


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A FineTuneJob on the Llama 3.2 1B template (one node, one GPU) unless `spec` says otherwise."""
    base: dict[str, Any] = {
        "model": "meta-llama/Llama-3.2-1B-Instruct",
        "trainingFile": "pvc://datasets/chat/train.jsonl",
        "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
        "checkpoint": {"uri": "pvc://checkpoints/" + name},
    }
    base.update(copy.deepcopy(spec))
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": base,
    }


def status_of(cluster: ApiEmulator, name: str) -> dict[str, Any]:
    body = cluster.live(FTJ, NAMESPACE, name)
    return (body or {}).get("status") or {}


def event_reasons(cluster: ApiEmulator, name: str) -> list[str]:
    return [
        event["reason"]
        for event in cluster.live_objects(EVENTS, NAMESPACE)
        if event["involvedObject"]["name"] == name and event.get("source", {}).get("component") == "kubetune-operator"
    ]
