"""One sandbox (a real operator process, the kubelet, TLS), used the ways its kubeconfig promises.

kubectl and `Connection.from_env` read the kubeconfig the sandbox writes; the API verifies as a
cluster's does (another CA is refused); pods the user creates run, log and stop through kubectl.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from kubetune_operator.kube import BASEMODELTEMPLATES, ApiError, KubeClient
from kubetune_operator.kube.connection import Connection
from kubetune_sandbox.control_plane import Sandbox, SandboxError, SandboxInfo
from kubetune_sandbox.kubeconfig import write_kubeconfig
from kubetune_sandbox.tls import issue

from ..conftest import EXAMPLES_DIR, REPO
from ..kubectl import KUBECTL_ENV, kubectl
from .sleeper_pods import SLEEPER_POD, eventually, pod_phase

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    async with Sandbox(tmp_path_factory.mktemp("sandbox")) as running:
        yield running
    assert running.runner.live_processes() == []


async def test_kubectl_lists_and_applies_finetunejobs_and_the_operator_takes_them(sandbox: Sandbox) -> None:
    assert await kubectl(sandbox.kubeconfig, "get", "ftj") == (0, "No resources found in default namespace.\n")
    code, output = await kubectl(
        sandbox.kubeconfig, "apply", "--validate=false", "-f", str(EXAMPLES_DIR / "quickstart.yaml")
    )
    assert (code, output.strip()) == (0, "finetunejob.kubetune.dev/quickstart created")

    async def phase_shown() -> bool:
        code, output = await kubectl(sandbox.kubeconfig, "get", "ftj", "quickstart", "--no-headers")
        return code == 0 and len(output.split()) >= 2 and output.split()[1] in {"Validating", "Running", "Failed"}

    await eventually(phase_shown, what="the operator process to give quickstart a phase")
    code, output = await kubectl(sandbox.kubeconfig, "get", "bmt", "qwen3-4b", "-o", "name")
    assert (code, output.strip()) == (0, "basemodeltemplate.kubetune.dev/qwen3-4b")


async def test_connection_from_env_reads_the_kubeconfig(sandbox: Sandbox) -> None:
    connection = Connection.from_env({"KUBECONFIG": str(sandbox.kubeconfig)})
    assert connection.server == sandbox.url
    assert connection.default_namespace == "default"
    async with KubeClient(connection) as client:
        template = await client.get(BASEMODELTEMPLATES, namespace=None, name="qwen3-4b")
    assert template is not None
    assert template["spec"]["hfModel"] == "Qwen/Qwen3-4B"


async def test_a_client_trusting_another_ca_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    stranger = issue(now=datetime.datetime.now(tz=datetime.UTC))
    token = "any-token"
    forged = write_kubeconfig(tmp_path / "kubeconfig", server=sandbox.url, ca_pem=stranger.ca_pem, token=token)
    code, output = await kubectl(forged, "get", "ftj")
    assert code != 0
    assert "certificate signed by unknown authority" in output
    connection = Connection.from_env({"KUBECONFIG": str(forged)})
    async with KubeClient(connection) as client:
        with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(BASEMODELTEMPLATES, namespace=None, name="qwen3-4b")


async def test_a_pod_runs_logs_and_stops_through_kubectl(sandbox: Sandbox) -> None:
    code, output = await kubectl(
        sandbox.kubeconfig, "apply", "--validate=false", "-f", "-", stdin=SLEEPER_POD.format(name="sleeper")
    )
    assert (code, output.strip()) == (0, "pod/sleeper created")

    async def greeted() -> bool:
        return await kubectl(sandbox.kubeconfig, "logs", "sleeper") == (0, "hello from sleeper\n")

    await eventually(greeted, what="`kubectl logs sleeper` to print the pod's greeting")
    assert await pod_phase(sandbox.kubeconfig, "sleeper") == "Running"
    assert [record.pod for record in sandbox.runner.live_processes()].count("sleeper") == 1
    code, output = await kubectl(sandbox.kubeconfig, "delete", "pod", "sleeper", "--timeout=30s")
    assert (code, output.strip()) == (0, 'pod "sleeper" deleted')
    assert "sleeper" not in [record.pod for record in sandbox.runner.live_processes()]


def documented_commands(heading: str) -> list[str]:
    """The shell commands of the console block under `heading` in docs/sandbox.md, as a user pastes them."""
    section = (REPO / "docs" / "sandbox.md").read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith("$ #"):
            continue
        if line.startswith("$ "):
            commands.append(line[2:])
        else:
            commands[-1] += "\n" + line  # a continuation of the command above
    return commands


async def run_documented(sandbox: Sandbox, command: str, *, pod: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **KUBECTL_ENV, "KUBECONFIG": str(sandbox.kubeconfig)}
    return await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", "set -eo pipefail\n" + command.replace("POD", pod)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_documented_eviction_and_kill_of_a_pod_work_as_written(sandbox: Sandbox) -> None:
    evict, kill = documented_commands("Preempting or killing a pod yourself")
    for name in ("evictee", "killed"):
        await kubectl(sandbox.kubeconfig, "apply", "--validate=false", "-f", "-", stdin=SLEEPER_POD.format(name=name))

    async def both_running() -> bool:
        return [await pod_phase(sandbox.kubeconfig, name) for name in ("evictee", "killed")] == ["Running"] * 2

    await eventually(both_running, what="pods evictee and killed to run")

    done = await run_documented(sandbox, evict, pod="evictee")
    assert done.returncode == 0, done.stdout + done.stderr

    async def evicted() -> bool:
        code, output = await kubectl(sandbox.kubeconfig, "get", "pod", "evictee")
        return code != 0 and 'pods "evictee" not found' in output

    await eventually(evicted, what="the evicted pod to be stopped and deleted (a bare pod is not replaced)")
    assert "evictee" not in [record.pod for record in sandbox.runner.live_processes()]

    done = await run_documented(sandbox, kill, pod="killed")
    assert done.returncode == 0, done.stdout + done.stderr

    async def killed() -> bool:
        return await pod_phase(sandbox.kubeconfig, "killed") == "Failed"

    await eventually(killed, what="the killed pod to fail")
    code, output = await kubectl(
        sandbox.kubeconfig,
        "get",
        "pod",
        "killed",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
    )
    assert (code, output) == (0, "137")
    assert "killed" not in [record.pod for record in sandbox.runner.live_processes()]
    # Again, on the pod that no longer runs: nothing to kill, and the shell that ran it is not hit
    # (a finished container's process id is gone, or another process's by now).
    again = await run_documented(sandbox, kill, pod="killed")
    assert again.returncode == 1, (again.returncode, again.stdout + again.stderr)


async def test_apply_creates_then_merges_like_kubectl_apply(sandbox: Sandbox) -> None:
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
    created = await sandbox.apply(settings)
    assert created["metadata"]["namespace"] == "default"
    updated = await sandbox.apply({**settings, "data": {"b": "2"}})
    assert updated["data"] == {"a": "1", "b": "2"}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    code, output = await kubectl(sandbox.kubeconfig, "get", "configmap", "settings", "-o", "jsonpath={.data.b}")
    assert (code, output) == (0, "2")
    with pytest.raises(ValueError, match=r"the API serves no Widget in example\.com/v1"):
        await sandbox.apply({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


async def test_a_second_sandbox_on_the_same_workdir_is_refused_and_changes_nothing(sandbox: Sandbox) -> None:
    kubeconfig_before = sandbox.kubeconfig.read_bytes()
    ready = sandbox.workdir / "sandbox.json"  # as the first `kubetune sandbox` would have written it
    ready.write_text(
        SandboxInfo(
            url=sandbox.url, kubeconfig=sandbox.kubeconfig, pid=os.getpid(), operator_log=sandbox.operator_log
        ).model_dump_json()
    )
    try:
        with pytest.raises(SandboxError, match=rf"is in use by another kubetune sandbox \(pid {os.getpid()}\)"):
            async with Sandbox(sandbox.workdir):
                pass
        command = [sys.executable, "-m", "kubetune_operator.cli", "sandbox", "--workdir", str(sandbox.workdir)]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert f"{sandbox.workdir} is in use by another kubetune sandbox" in done.stderr
        assert "give this one another workdir (--workdir)" in done.stderr
        assert ready.exists()
        assert sandbox.kubeconfig.read_bytes() == kubeconfig_before
        assert await kubectl(sandbox.kubeconfig, "get", "bmt", "qwen3-4b", "-o", "name") == (
            0,
            "basemodeltemplate.kubetune.dev/qwen3-4b\n",
        )
    finally:
        ready.unlink()
