"""`Sandbox`: the API emulator over TLS, the real operator as a process, the Job controller and the kubelet.

```python
async with Sandbox(workdir, hf_home=hf_home) as sandbox:
    await sandbox.apply(manifest)          # or: KUBECONFIG=sandbox.kubeconfig kubectl apply ...
```
Entering starts, in order: the emulator on `https://127.0.0.1:<port>` (a CA and certificate of its
own, graceful pod deletion, the eviction and log subresources answered by the pod runner), the CRDs
generated from the API models, the packaged template catalog, the kubeconfig, the Job controller
and the pod runner (tasks in this event loop), then `python -m kubetune_operator` with
KUBECONFIG set to the sandbox's; entering returns once the operator watches every kind it
reconciles. An operator process that dies is started again after a short delay (1 s, growing to
10 s while it keeps dying), as its Deployment's pod would be: the API's state and the pods stay.
Leaving stops the operator (SIGTERM, then SIGKILL), ends every open watch, kills every pod
process and closes the server: no process is left behind.

The operator gets a clean environment: its settings are the sandbox's (`KUBETUNE_CACHE_CLAIM`,
`KUBETUNE_TRAINER_METRICS_PORT=0`) plus `operator_env`, never the caller's shell, so a
`KUBETUNE_*` variable exported for something else cannot change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import os
import secrets
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

import aiohttp
import aiohttp.test_utils
import kmock
import yaml
import yarl
from pydantic import BaseModel, ConfigDict, Field

from kubetune_operator.api import crdgen
from kubetune_operator.kube.connection import Connection
from kubetune_operator.resolve.catalog import packaged_catalog_dir

from .client import JsonObject, SandboxClient
from .emulator import ApiEmulator
from .job_controller import JobController
from .kubeconfig import write_kubeconfig
from .layout import SandboxLayout
from .pod_inputs import ApiEndpoint
from .pod_runner import EnvHook, PodRunner
from .process_tree import terminate_when_parent_dies
from .tls import ServingCertificate, issue, server_context

CACHE_CLAIM = "kubetune-cache"
"""The claim the operator mounts as the pods' Hugging Face cache; its `hf` entry links to `hf_home`."""
READY_FILE = "sandbox.json"
"""`<workdir>/sandbox.json`: `kubetune sandbox` writes it once ready; a sandbox starting removes a stale one."""
LOCK_FILE = "sandbox.lock"
"""Held (flock) while a sandbox runs on the workdir; it holds the pid, and the kernel frees it when that dies."""
OPERATOR_READY_SECONDS = 60.0
OPERATOR_STOP_SECONDS = 10.0
OPERATOR_RESTART_DELAYS = (1.0, 2.0, 4.0, 8.0, 10.0)
"""Seconds before each restart of a dead operator (CrashLoopBackOff, shortened); the last one repeats."""
OPERATOR_STEADY_SECONDS = 60.0
"""An operator that ran this long before it died restarts after the first delay again."""
RestartHook = Callable[[int, float], None]
"""Told (exit code, seconds until the restart) when the operator process dies."""
_WATCHED = (
    kmock.resource("kubetune.dev", "v1alpha1", "finetunejobs"),
    kmock.resource("kubetune.dev", "v1alpha1", "basemodeltemplates"),
    kmock.resource("batch", "v1", "jobs"),
    kmock.resource("", "v1", "pods"),
)


class SandboxInfo(BaseModel):
    """`<workdir>/sandbox.json`, written by `kubetune sandbox` once it is ready (a script waits for it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="The API server, https://127.0.0.1:<port>.")
    kubeconfig: Path = Field(description="The kubeconfig for kubectl and kubetune (KUBECONFIG=...).")
    pid: int = Field(description="The `kubetune sandbox` process: SIGINT or SIGTERM stops the sandbox.")
    operator_log: Path = Field(description="Where the operator process writes its log.")


class SandboxError(RuntimeError):
    """The sandbox could not start; the message says what to look at (usually the operator's log)."""


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


class Sandbox:
    """A one-machine kubetune: see the module docstring. One use per instance."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int = 0,
        hf_home: Path | None = None,
        namespaces: Sequence[str] = ("default",),
        operator_env: Mapping[str, str] | None = None,
        pod_env: Mapping[str, str] | None = None,
        env_hook: EnvHook | None = None,
        clock: Callable[[], datetime.datetime] = utc_now,
        on_operator_restart: RestartHook | None = None,
    ) -> None:
        if not namespaces:
            raise ValueError("namespaces: give at least one (the first is the kubeconfig context's namespace)")
        self.workdir = workdir.resolve()
        self.layout = SandboxLayout(
            root=self.workdir, hf_home=hf_home, cache_claim=CACHE_CLAIM if hf_home is not None else None
        )
        self._port = port
        self._namespaces = tuple(namespaces)
        self._operator_env = dict(operator_env or {})
        self._pod_env = dict(pod_env or {})
        self._env_hook = env_hook
        self._clock = clock
        self._token = secrets.token_urlsafe(32)
        self._stack = contextlib.AsyncExitStack()
        self._emulator: ApiEmulator | None = None
        self._server: kmock.Server | None = None
        self._runner: PodRunner | None = None
        self._operator: asyncio.subprocess.Process | None = None
        self._on_operator_restart = on_operator_restart
        self.operator_exits: list[int] = []
        """The exit codes of the operator processes that died while the sandbox ran (each was restarted)."""
        self.kubeconfig = self.workdir / "kubeconfig"
        self.operator_log = self.workdir / "operator.log"

    # What tests, the CLI and the demo use.

    @property
    def emulator(self) -> ApiEmulator:
        if self._emulator is None:
            raise RuntimeError("the sandbox is not running: use `async with Sandbox(...)`")
        return self._emulator

    @property
    def runner(self) -> PodRunner:
        if self._runner is None:
            raise RuntimeError("the sandbox is not running: use `async with Sandbox(...)`")
        return self._runner

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running: use `async with Sandbox(...)`")
        return f"https://127.0.0.1:{self._server.port}"

    @property
    def operator_pid(self) -> int | None:
        return self._operator.pid if self._operator is not None and self._operator.returncode is None else None

    def volume(self, claim: str) -> Path:
        """The host directory behind `pvc://<claim>/...` (created on first use)."""
        path = self.layout.volume(claim)
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def apply(self, manifest: JsonObject) -> JsonObject:
        """Create the object, or merge-patch it when it exists (what `kubectl apply` amounts to here)."""
        path = self._collection_path(manifest)
        name = manifest.get("metadata", {}).get("name")
        async with self.emulator.post(path, json=manifest) as created:
            if created.status != 409 or not name:
                return await _answer(created, what=f"create {path}")
        body = {key: value for key, value in manifest.items() if key != "status"}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.emulator.patch(f"{path}/{name}", json=body, headers=headers) as patched:
            return await _answer(patched, what=f"patch {path}/{name}")

    # Lifecycle.

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock_workdir()
        (self.workdir / READY_FILE).unlink(missing_ok=True)  # a stale file from an earlier run must not look ready
        self.layout.prepare()
        certificate = issue(now=self._clock())
        _, cert_file, key_file = certificate.write(self.workdir / "tls")
        emulator = ApiEmulator(
            namespaces={"default", *self._namespaces},
            graceful_pod_deletion=True,
            on_eviction=self._evict,
            pod_log=self._pod_log,
        )
        self._emulator = await self._stack.enter_async_context(emulator)
        server = kmock.Server(
            emulator,
            port=self._port or None,
            server_cls=_tls_server_class(server_context(cert_file=cert_file, key_file=key_file)),
            client_fct=_trusting_client(certificate),
        )
        try:
            self._server = await self._stack.enter_async_context(server)
        except OSError as error:
            raise SandboxError(
                f"cannot serve the API on 127.0.0.1:{self._port}: {error.strerror or error}; "
                "choose another port (0 picks a free one)"
            ) from None
        # Leaving ends the open watches (kubectl get -w) before the server closes: it waits for open responses.
        self._stack.callback(emulator.end_streams)
        await self._register_api(emulator)
        write_kubeconfig(
            self.kubeconfig,
            server=self.url,
            ca_pem=certificate.ca_pem,
            token=self._token,
            namespace=self._namespaces[0],
        )
        await self._start_controllers(certificate)
        await self._start_operator()

    def _lock_workdir(self) -> None:
        """One sandbox per workdir: a second one would rewrite the first's kubeconfig, CA and sandbox.json."""
        lock = hold_lock(self.workdir / LOCK_FILE)
        if lock is None:
            holder = (self.workdir / LOCK_FILE).read_text(encoding="utf-8").strip() or "unknown"
            raise SandboxError(
                f"{self.workdir} is in use by another kubetune sandbox (pid {holder}); "
                "stop that one, or give this one another workdir (--workdir)"
            )
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._stack.callback(lock.close)

    async def _register_api(self, emulator: ApiEmulator) -> None:
        emulator.resources.load_bundled()
        for crd in (crdgen.finetunejob_crd(), crdgen.basemodeltemplate_crd()):
            emulator.register_crd(crd)
        for entry in sorted(packaged_catalog_dir().iterdir(), key=lambda entry: entry.name):
            if entry.name.endswith(".yaml"):
                await self.apply(yaml.safe_load(entry.read_text(encoding="utf-8")))

    async def _start_controllers(self, certificate: ServingCertificate) -> None:
        # The controllers reach the API as kubectl and the operator do: through the sandbox's kubeconfig.
        client = SandboxClient(Connection.from_env({"KUBECONFIG": str(self.kubeconfig)}))
        await self._stack.enter_async_context(client)
        assert self._server is not None
        endpoint = ApiEndpoint(host="127.0.0.1", port=self._server.port, ca_pem=certificate.ca_pem, token=self._token)
        self._runner = PodRunner(
            client, layout=self.layout, endpoint=endpoint, pod_env=self._pod_env, env_hook=self._env_hook
        )
        # Leaving runs these callbacks last-in first-out: cancel the watches, then kill the pods.
        self._stack.push_async_callback(self._runner.stop)
        for loop in (self._runner.run(), JobController(client).run()):
            task = asyncio.create_task(loop)
            self._stack.push_async_callback(_cancel, task)

    async def _start_operator(self) -> None:
        """The operator process, and its supervisor: a Deployment's restarts, keeping the API and the pods."""
        await self._spawn_operator()
        self._stack.push_async_callback(self._stop_operator)
        await self._wait_for_operator()
        supervisor = asyncio.create_task(self._supervise_operator())
        self._stack.push_async_callback(_cancel, supervisor)  # runs before _stop_operator: no restart while leaving

    async def _supervise_operator(self) -> None:
        """Restart the operator whenever its process dies, after a delay that grows while it keeps dying."""
        failures = 0
        while True:
            assert self._operator is not None
            started = asyncio.get_running_loop().time()
            code = await self._operator.wait()
            if asyncio.get_running_loop().time() - started >= OPERATOR_STEADY_SECONDS:
                failures = 0
            delay = OPERATOR_RESTART_DELAYS[min(failures, len(OPERATOR_RESTART_DELAYS) - 1)]
            failures += 1
            self.operator_exits.append(code)
            with self.operator_log.open("a", encoding="utf-8") as log:
                log.write(f"kubetune sandbox: the operator exited with code {code}; restarting it in {delay:.0f}s\n")
            if self._on_operator_restart is not None:
                self._on_operator_restart(code, delay)
            await asyncio.sleep(delay)
            await self._spawn_operator()

    async def _spawn_operator(self) -> None:
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "KUBETUNE_TRAINER_METRICS_PORT": "0",
            **({"KUBETUNE_CACHE_CLAIM": CACHE_CLAIM} if self.layout.cache_claim else {}),
            **self._operator_env,
        }
        with self.operator_log.open("ab") as log:
            self._operator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kubetune_operator",
                "--metrics-port",
                "0",
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it reaches anything it spawned
                preexec_fn=terminate_when_parent_dies,
            )

    async def _wait_for_operator(self) -> None:
        """Ready when kopf watches every kind the operator reconciles (kopf's own ready flag comes earlier)."""
        deadline = asyncio.get_running_loop().time() + OPERATOR_READY_SECONDS
        while not self._operator_watches_everything():
            assert self._operator is not None
            if self._operator.returncode is not None:
                raise SandboxError(
                    f"the operator exited with code {self._operator.returncode} before it was ready; "
                    f"see {self.operator_log}:\n{_tail(self.operator_log)}"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise SandboxError(
                    f"the operator did not watch {', '.join(r.plural or '' for r in _WATCHED)} within "
                    f"{OPERATOR_READY_SECONDS:.0f}s; see {self.operator_log}:\n{_tail(self.operator_log)}"
                )
            await asyncio.sleep(0.1)

    def _operator_watches_everything(self) -> bool:
        watched = {
            request.resource
            for request in self.emulator
            if request.action == kmock.action.WATCH and request.headers.get("User-Agent", "").startswith("kopf/")
        }
        return all(resource in watched for resource in _WATCHED)

    async def _stop_operator(self) -> None:
        process = self._operator
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), OPERATOR_STOP_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    # The emulator's pod subresources, answered by the kubelet.

    async def _evict(self, namespace: str, name: str) -> None:
        await self.runner.evict(namespace, name)

    def _pod_log(self, namespace: str, name: str) -> str | None:
        path = self.runner.log_path(namespace, name)
        if path is None or not path.exists():
            return None
        return path.read_text(encoding="utf-8", errors="replace")

    def _collection_path(self, manifest: JsonObject) -> str:
        namespace = manifest.get("metadata", {}).get("namespace") or self._namespaces[0]
        return self.emulator.collection_path(
            manifest.get("apiVersion", ""), manifest.get("kind", ""), namespace=namespace
        )


def hold_lock(path: Path) -> TextIO | None:
    """`path` opened and exclusively locked (flock, freed when its holder dies); None while another holds it."""
    lock = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _tls_server_class(context: ssl.SSLContext) -> type[aiohttp.test_utils.RawTestServer]:
    """kmock's server class, listening with TLS (kmock passes no ssl= of its own)."""

    class TlsServer(aiohttp.test_utils.RawTestServer):
        async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
            await super().start_server(loop=loop, ssl=context, **kwargs)

    return TlsServer


def _trusting_client(certificate: ServingCertificate) -> Callable[[yarl.URL], aiohttp.ClientSession]:
    """kmock's own client (`emulator.get/post/...`), trusting the sandbox CA."""

    def client(base_url: yarl.URL) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(base_url, connector=aiohttp.TCPConnector(ssl=certificate.client_context()))

    return client


async def _answer(response: aiohttp.ClientResponse, *, what: str) -> JsonObject:
    body: JsonObject = await response.json()
    if response.status >= 400:
        raise SandboxError(f"{what}: {response.status} {body.get('message', body)}")
    return body


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _tail(path: Path, *, limit: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except FileNotFoundError:
        return "(no log)"
