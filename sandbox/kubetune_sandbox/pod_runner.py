"""The sandbox's kubelet: every pod the API holds runs as a host process group, its status written back.

A pod is bound to the sandbox's one node, planned (`pod_plan`), and started as a new session
(its own process group, so everything it spawns can be signalled together), stdout and stderr
in its log file. Status follows the kubelet's shapes: Running with the container running,
then the container terminated with its exit code (128 + the signal for a signalled process),
reason Completed or Error and the termination log's last 4096 bytes as its message, and the
phase Succeeded or Failed. When the main process ends, whatever is left of its group is
killed, as a container runtime tears down the container.

Deletion is graceful when the API server marks the pod (deletionTimestamp): SIGTERM to the
group, SIGKILL after the grace period, the final status, then the kubelet's own DELETE with
gracePeriodSeconds 0. A pod the API removes at once loses its processes the same way. A
container whose config cannot be resolved (a missing Secret) waits with the kubelet's reason
and message, and is tried again every `retry_seconds`, as the kubelet retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune_operator.kube.client import ApiError
from kubetune_operator.kube.resources import CONFIGMAPS, PODS, SERVICES
from kubetune_sandbox import pod_status
from kubetune_trainer.contract import format_kube_time

from .client import API_FAILURES, SECRETS, JsonObject, SandboxClient
from .layout import SandboxLayout
from .loopback_ports import LoopbackPorts
from .pod_inputs import ApiEndpoint, Host, PodInputs, PodPlanError
from .pod_plan import ProcessPlan, plan_pod
from .process_tree import POD_MARK_ENV, kill_marked, terminate_when_parent_dies

EnvHook = Callable[[JsonObject], Mapping[str, str]]
START_ERROR_EXIT = 128
"""What a container runtime reports for a container whose command could not be started."""

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(frozen=True)
class ProcessRecord:
    namespace: str
    pod: str
    pid: int


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    plan: ProcessPlan | None = None
    process: asyncio.subprocess.Process | None = None
    started_at: str = ""
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    """Running was written (or could not be): the terminated status must come after it."""
    deleting: bool = False
    stopping_within: int | None = None
    """The grace period its SIGTERM was sent with; a shorter one asked later cuts it short."""
    removed: bool = False
    """The API no longer holds the pod: nothing to write back."""
    evicted: bool = False
    waiting: tuple[str, str] | None = None
    """The reason and message the container waits with (its config cannot be resolved yet)."""
    unreachable: bool = False
    """Its start could not read the API (an error, a dropped connection): tried again, as the kubelet's
    sync loop does."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def alive(self) -> bool:
        return self.process is not None and not self.exited.is_set()


class PodRunner:
    """Plays the kubelet of a one-node cluster for every pod in every namespace."""

    def __init__(
        self,
        client: SandboxClient,
        *,
        layout: SandboxLayout,
        endpoint: ApiEndpoint,
        pod_env: Mapping[str, str] | None = None,
        env_hook: EnvHook | None = None,
        interpreter: Path | None = None,
        clock: Callable[[], datetime] = utc_now,
        retry_seconds: float = 2.0,
    ) -> None:
        self._client = client
        self._layout = layout
        self._host = Host(interpreter=interpreter or Path(sys.executable), endpoint=endpoint)
        self._pod_env = dict(pod_env or {})
        self._env_hook = env_hook
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._ports = LoopbackPorts()

    # What tests, the CLI and the emulator's eviction endpoint call.

    async def run(self) -> None:
        """Watch pods until cancelled; cancelling leaves processes running (`stop` kills them)."""
        self._layout.prepare()
        retry = asyncio.create_task(self._retry_waiting())
        try:
            async for kind, pod in self._client.watch(PODS):
                try:
                    await self._observe(kind, pod)
                except API_FAILURES as error:  # the pod changed or went meanwhile: its next event says what now
                    log.warning("pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"].get("name"), error)
        finally:
            retry.cancel()

    async def evict(self, namespace: str, name: str) -> None:
        """The Eviction API: a DisruptionTarget condition, then a graceful deletion (the pod's grace period)."""
        state = self._pods.get((namespace, name))
        if state is not None:
            state.evicted = True
        condition = pod_status.disruption_target(now=self._now())
        current = await self._client.get(PODS, namespace=namespace, name=name)
        if current is None:
            return
        conditions = (current.get("status") or {}).get("conditions") or []
        conditions = [c for c in conditions if c.get("type") != "DisruptionTarget"] + [condition]
        await self._patch_status(namespace, name, {"conditions": conditions})
        await self._client.delete(PODS, namespace=namespace, name=name)

    async def kill(self, namespace: str, name: str) -> None:
        """SIGKILL the pod's processes at once, as a node losing power would (exit 137, reason Error)."""
        state = self._pods.get((namespace, name))
        if state is not None and state.alive:
            _signal_group(state, signal.SIGKILL)
            await state.exited.wait()

    async def stop(self) -> None:
        """SIGKILL every pod's processes and wait for them; statuses are not written (the sandbox is ending)."""
        running = [state for state in self._pods.values() if state.alive]
        for state in running:
            state.removed = True
            _signal_group(state, signal.SIGKILL)
        for state in running:
            await state.exited.wait()
        for state in self._pods.values():
            for task in list(state.tasks):
                task.cancel()

    def live_processes(self) -> list[ProcessRecord]:
        return [
            ProcessRecord(state.namespace, state.name, state.process.pid)
            for state in self._pods.values()
            if state.alive and state.process is not None
        ]

    def log_path(self, namespace: str, name: str) -> Path | None:
        """The container log of a pod this runner started (`kubectl logs`)."""
        state = self._pods.get((namespace, name))
        if state is None or state.plan is None:
            return None
        return state.plan.log_file

    # Watch events.

    async def _observe(self, kind: str, pod: JsonObject) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        state = self._pods.get(key)
        if state is not None and state.uid != meta.get("uid"):
            state.removed = True  # the name now belongs to a new pod: the old one's processes must go
            self._stop_within(state, _grace({}, state))
            state = None
        if kind == "DELETED":
            if state is not None:
                state.removed = True
                self._stop_within(state, _grace(pod, state))
            return
        if state is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Running"):
                return  # finished, or run by an earlier kubelet: nothing this one can adopt
            state = self._pods[key] = _Pod(namespace=key[0], name=key[1], uid=str(meta.get("uid")))
            if not meta.get("deletionTimestamp"):
                await self._start(state, pod)
        if meta.get("deletionTimestamp") and not state.deleting:
            state.deleting = True
            if state.alive:
                self._stop_within(state, _grace(pod, state))
            else:
                await self._finalize(state)
        elif meta.get("deletionTimestamp"):
            self._stop_within(state, _grace(pod, state))  # a later DELETE may have shortened the grace

    async def _retry_waiting(self) -> None:
        """Containers waiting on their config start once it appears, as the kubelet retries."""
        while True:
            await asyncio.sleep(self._retry_seconds)
            for state in list(self._pods.values()):
                if (state.waiting is None and not state.unreachable) or state.deleting or state.removed:
                    continue
                with contextlib.suppress(*API_FAILURES):
                    pod = await self._client.get(PODS, namespace=state.namespace, name=state.name)
                    if pod is not None and pod["metadata"].get("uid") == state.uid:
                        await self._start(state, pod)

    # The container's life.

    async def _start(self, state: _Pod, pod: JsonObject) -> None:
        state.unreachable = False
        try:
            if not pod.get("spec", {}).get("nodeName"):
                # The scheduler's binding: the sandbox has one node.
                bound = await self._client.merge_patch(
                    PODS, {"spec": {"nodeName": self._host.node_name}}, namespace=state.namespace, name=state.name
                )
                pod = bound or pod
            inputs = await self._inputs(state.namespace)
        except API_FAILURES as error:
            # Nothing started yet: a later try may succeed (a pod that went meanwhile is never tried again).
            log.warning("pod %s/%s cannot start yet: %s", state.namespace, state.name, error)
            state.unreachable = True
            return
        try:
            plan = plan_pod(
                pod,
                layout=self._layout,
                inputs=inputs,
                host=self._host,
                host_port=self._ports.port,
                extra_env={**self._pod_env, **(self._env_hook(pod) if self._env_hook else {})},
            )
        except PodPlanError as error:
            if state.waiting != (error.reason, error.message):  # said once, not at every retry
                state.waiting = (error.reason, error.message)
                await self._write_waiting(state, pod, error)
            return
        state.waiting = None
        if state.deleting or state.removed:
            return  # deleted while this start awaited the API (a retry runs beside the watch)
        state.plan = plan
        state.started_at = self._now()
        try:
            _materialize(plan)
            with plan.log_file.open("ab") as output:
                state.process = await asyncio.create_subprocess_exec(
                    *plan.argv,
                    env={**plan.env, POD_MARK_ENV: state.uid},
                    cwd=plan.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=terminate_when_parent_dies,
                )
        except OSError as error:
            state.exited.set()
            terminated = {"exitCode": START_ERROR_EXIT, "reason": "StartError", "message": str(error)}
            await self._write_terminated(state, terminated)
            return
        log.info("pod %s/%s started as process group %d", state.namespace, state.name, state.process.pid)
        # Watched before anything else can fail: a pod gone meanwhile (its Running write then fails)
        # still has its process stopped, reaped and its state settled.
        self._spawn(state, self._wait(state, state.process, plan))
        if state.deleting or state.removed:
            state.announced.set()
            self._stop_within(state, 0)
            return
        try:
            await self._write_running(state, pod)
        finally:
            state.announced.set()

    async def _wait(self, state: _Pod, process: asyncio.subprocess.Process, plan: ProcessPlan) -> None:
        returncode = await process.wait()
        _signal_group(state, signal.SIGKILL)  # the container is gone: so is everything it left running
        state.exited.set()
        exit_code = 128 - returncode if returncode < 0 else returncode
        terminated: JsonObject = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
        if message := pod_status.termination_message(plan, failed=exit_code != 0):
            terminated["message"] = message
        log.info("pod %s/%s exited with %d", state.namespace, state.name, exit_code)
        await state.announced.wait()
        if not state.removed:
            await self._write_terminated(state, terminated)
        if state.deleting:
            await self._finalize(state)

    def _stop_within(self, state: _Pod, grace: int) -> None:
        """SIGTERM the pod's processes and SIGKILL them after `grace` seconds, unless already on a shorter clock."""
        if not state.alive or (state.stopping_within is not None and state.stopping_within <= grace):
            return
        state.stopping_within = grace
        self._spawn(state, self._terminate(state, grace=grace))

    async def _terminate(self, state: _Pod, *, grace: int) -> None:
        """SIGTERM, then SIGKILL after the grace period; `_wait` writes what happened."""
        _signal_group(state, signal.SIGTERM)
        try:
            await asyncio.wait_for(state.exited.wait(), timeout=grace)
        except TimeoutError:
            _signal_group(state, signal.SIGKILL)
            await state.exited.wait()

    async def _finalize(self, state: _Pod) -> None:
        """The kubelet's last word on a deleted pod: remove it now that its containers are gone."""
        if state.removed:
            return
        state.removed = True
        with contextlib.suppress(ApiError):
            await self._client.delete(PODS, namespace=state.namespace, name=state.name, grace_period_seconds=0)

    # Status, in the kubelet's shapes.

    async def _write_waiting(self, state: _Pod, pod: JsonObject, error: PodPlanError) -> None:
        container = (pod.get("spec", {}).get("containers") or [{}])[0]
        await self._patch_status(state.namespace, state.name, pod_status.waiting(container, error, now=self._now()))

    async def _write_running(self, state: _Pod, pod: JsonObject) -> None:
        now = self._now()
        container = self._container_status(state, {"running": {"startedAt": state.started_at}})
        start_time = (pod.get("status") or {}).get("startTime") or now
        await self._patch_status(
            state.namespace, state.name, pod_status.running(container, start_time=start_time, now=now)
        )

    async def _write_terminated(self, state: _Pod, terminated: JsonObject) -> None:
        now = self._now()
        terminated = {**terminated, "startedAt": state.started_at or now, "finishedAt": now}
        container = self._container_status(state, {"terminated": terminated})
        status = pod_status.terminated(container, exit_code=int(terminated["exitCode"]), evicted=state.evicted, now=now)
        with contextlib.suppress(ApiError):  # a pod deleted meanwhile has nothing to update
            await self._patch_status(state.namespace, state.name, status)

    def _container_status(self, state: _Pod, container_state: JsonObject) -> JsonObject:
        return pod_status.container_status(
            name=state.plan.container if state.plan else "",
            image=state.plan.image if state.plan else "",
            pid=state.process.pid if state.process is not None else 0,
            state=container_state,
        )

    async def _patch_status(self, namespace: str, name: str, status: JsonObject) -> None:
        await self._client.patch_status(PODS, status, namespace=namespace, name=name)

    # What a pod's plan needs from the API and the host.

    async def _inputs(self, namespace: str) -> PodInputs:
        secrets = await self._client.list(SECRETS, namespace=namespace)
        config_maps = await self._client.list(CONFIGMAPS, namespace=namespace)
        services = await self._client.list(SERVICES, namespace=None)
        return PodInputs(
            secrets={item["metadata"]["name"]: item for item in secrets},
            config_maps={item["metadata"]["name"]: item for item in config_maps},
            services={(str(item["metadata"].get("namespace")), str(item["metadata"]["name"])) for item in services},
        )

    def _now(self) -> str:
        return format_kube_time(self._clock())

    def _spawn(self, state: _Pod, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        task.add_done_callback(_log_failure)


def _materialize(plan: ProcessPlan) -> None:
    # Before anything is written in it: Secret values must never sit where other local users can read.
    plan.pod_dir.mkdir(parents=True, exist_ok=True)
    plan.pod_dir.chmod(0o700)
    for directory in plan.directories:
        directory.mkdir(parents=True, exist_ok=True)
    for path, content in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _signal_group(state: _Pod, sig: signal.Signals) -> None:
    """SIGTERM the container's process group (torchrun forwards it); SIGKILL everything the pod started."""
    if state.process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(state.process.pid, sig)
    if sig is signal.SIGKILL:
        kill_marked(state.uid)


def _grace(pod: JsonObject, state: _Pod) -> int:
    meta = pod.get("metadata") or {}
    if meta.get("deletionGracePeriodSeconds") is not None:
        return int(meta["deletionGracePeriodSeconds"])
    return state.plan.grace_seconds if state.plan is not None else 0


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("pod runner task failed: %r", error)
