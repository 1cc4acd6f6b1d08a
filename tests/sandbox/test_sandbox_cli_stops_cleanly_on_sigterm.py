"""`kubetune sandbox` as a user runs it: ready file, kubeconfig, a running pod, then SIGTERM leaves nothing.

SIGTERM also ends the open watches (`kubectl get -w`, `kubectl logs -f`) at once; an operator
process that dies is restarted, keeping the API's objects and the pods.

The command runs as its own process (`python -m kubetune_operator.cli sandbox`); every process it
started (the operator, each pod's process group) is found through /proc before the signal and must
be gone after it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from kubetune_sandbox.control_plane import SandboxInfo

from ..kubectl import kubectl
from .sleeper_pods import SLEEPER_POD, eventually, pod_phase


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (by the parent pid in /proc/<pid>/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone while we looked
        # `pid (comm) state ppid ...`: comm may hold spaces, so split after its closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _run_sleeper_pod(kubeconfig: Path, name: str) -> None:
    """Apply a sleeper pod `name` (its process prints `hello from <name>`) and wait until it runs."""
    code, output = await kubectl(
        kubeconfig, "apply", "--validate=false", "-f", "-", stdin=SLEEPER_POD.format(name=name)
    )
    assert code == 0, output

    async def running() -> bool:
        return await pod_phase(kubeconfig, name) == "Running"

    await eventually(running, what=f"pod {name} to run")


async def test_sigterm_stops_the_operator_and_every_pod_and_exits_zero(tmp_path: Path) -> None:
    workdir = tmp_path / "sandbox"
    log = (tmp_path / "sandbox.log").open("wb")
    command = [sys.executable, "-m", "kubetune_operator.cli", "sandbox", "--workdir", str(workdir)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = workdir / "sandbox.json"

        async def is_ready() -> bool:
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            return ready.exists()

        await eventually(is_ready, what="sandbox.json", timeout=60)
        info = SandboxInfo.model_validate_json(ready.read_text())
        assert info.pid == process.pid
        assert info.kubeconfig == workdir.resolve() / "kubeconfig"
        assert info.url.startswith("https://127.0.0.1:")
        await _run_sleeper_pod(info.kubeconfig, "sleeper")
        started = _children(process.pid)
        commands = {pid: (Path("/proc") / str(pid) / "cmdline").read_bytes() for pid in started}
        assert any(b"kubetune_operator" in line for line in commands.values()), commands
        assert any(b"hello from sleeper" in line for line in commands.values()), commands

        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert [pid for pid in started if _alive(pid)] == []
    assert not ready.exists()
    assert "kubetune sandbox: stopped" in (tmp_path / "sandbox.log").read_text()
    assert f"export KUBECONFIG={info.kubeconfig}" in (tmp_path / "sandbox.log").read_text()


async def test_a_killed_operator_is_restarted_and_the_api_and_pods_are_kept(tmp_path: Path) -> None:
    """As a Deployment restarts its pod: a new operator process, the same API objects, the same running pod."""
    workdir = tmp_path / "sandbox"
    process, operator = await _ready_sandbox(workdir, tmp_path / "sandbox.log")
    kubeconfig = workdir.resolve() / "kubeconfig"
    await _run_sleeper_pod(kubeconfig, "k")
    _, uid = await kubectl(kubeconfig, "get", "pod", "k", "-o", "jsonpath={.metadata.uid}")
    (sleeper,) = [pid for pid in _children(process.pid) if b"hello from k" in _cmdline(pid)]
    try:
        os.kill(operator, signal.SIGKILL)

        async def restarted() -> bool:
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            found = [pid for pid in _children(process.pid) if b"kubetune_operator\x00--metrics-port" in _cmdline(pid)]
            return bool(found) and found != [operator]

        await eventually(restarted, what="a new operator process", timeout=60)
        assert _alive(sleeper)
        assert await kubectl(kubeconfig, "get", "pod", "k", "-o", "jsonpath={.metadata.uid}") == (0, uid)
        assert await pod_phase(kubeconfig, "k") == "Running"
        code, templates = await kubectl(kubeconfig, "get", "basemodeltemplates", "-o", "name")
        assert code == 0, templates
        assert "basemodeltemplate" in templates  # the catalog the sandbox loaded at start is still served
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "sandbox.log").read_text()
    assert "kubetune sandbox: the operator exited with code -9; restarting it in 1s" in log
    assert "kubetune sandbox: the operator exited with code -9" in (workdir / "operator.log").read_text()
    assert not _alive(sleeper)


async def test_a_busy_port_is_reported_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        command = [sys.executable, "-m", "kubetune_operator.cli", "sandbox", "--workdir", str(tmp_path), "--port", port]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    assert done.returncode == 1
    assert f"kubetune sandbox: cannot serve the API on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "choose another port (0 picks a free one)" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_malformed_env_pair_names_the_flag(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "kubetune_operator.cli",
        "sandbox",
        "--workdir",
        str(tmp_path),
        "--pod-env",
        "NOEQUALS",
    ]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
    assert done.returncode == 2
    assert "--pod-env 'NOEQUALS': expected KEY=VALUE" in done.stderr


async def _ready_sandbox(workdir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A `kubetune sandbox` process, once ready, and its operator's pid."""
    command = [sys.executable, "-m", "kubetune_operator.cli", "sandbox", "--workdir", str(workdir)]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    async def is_ready() -> bool:
        assert process.poll() is None, log.read_text()
        return (workdir / "sandbox.json").exists()

    await eventually(is_ready, what="sandbox.json", timeout=60)
    (operator,) = [pid for pid in _children(process.pid) if b"kubetune_operator\x00--metrics-port" in _cmdline(pid)]
    return process, operator


async def test_sighup_stops_the_sandbox_as_sigterm_does(tmp_path: Path) -> None:
    process, operator = await _ready_sandbox(tmp_path / "sandbox", tmp_path / "sandbox.log")
    try:
        process.send_signal(signal.SIGHUP)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "kubetune sandbox: stopped" in (tmp_path / "sandbox.log").read_text()
    assert not _alive(operator)


async def test_a_killed_sandbox_takes_its_operator_and_pods_with_it(tmp_path: Path) -> None:
    workdir = tmp_path / "sandbox"
    process, operator = await _ready_sandbox(workdir, tmp_path / "sandbox.log")
    kubeconfig = workdir.resolve() / "kubeconfig"
    await _run_sleeper_pod(kubeconfig, "z")
    (sleeper,) = [pid for pid in _children(process.pid) if b"hello from z" in _cmdline(pid)]
    process.kill()  # no handler runs: only the kernel can end the operator and the pod now
    process.wait()

    async def both_gone() -> bool:
        return not _alive(operator) and not _alive(sleeper)

    try:
        await eventually(both_gone, what="the operator and the pod to end with their sandbox", timeout=15)
    finally:
        for pid in (operator, sleeper):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


STOP_MARGIN_SECONDS = 15.0
"""Measured 1.2 s on an idle machine (it was 120 s and more, until the watch ended); 15 s holds under load."""


async def test_sigterm_ends_the_sandbox_and_its_open_watches(tmp_path: Path) -> None:
    """An open `kubectl get ftj -w` and `kubectl logs -f` end with the sandbox, and do not hold it up."""
    workdir = tmp_path / "sandbox"
    process, _ = await _ready_sandbox(workdir, tmp_path / "sandbox.log")
    kubeconfig = workdir.resolve() / "kubeconfig"
    await _run_sleeper_pod(kubeconfig, "w")
    watch = asyncio.create_task(kubectl(kubeconfig, "get", "ftj", "-w", timeout=300))
    follow = asyncio.create_task(kubectl(kubeconfig, "logs", "-f", "w", timeout=300))
    await asyncio.sleep(2.0)
    assert not watch.done()  # open: a watch never ends by itself
    assert not follow.done()
    started = asyncio.get_running_loop().time()
    try:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 300) == 0
        stopped = asyncio.get_running_loop().time() - started
        await asyncio.wait_for(asyncio.gather(watch, follow), 300)
        ended = asyncio.get_running_loop().time() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(f"sandbox stopped {stopped:.1f}s, watches ended {ended:.1f}s after SIGTERM")
    assert stopped < STOP_MARGIN_SECONDS
    assert ended < STOP_MARGIN_SECONDS
    assert "hello from w" in follow.result()[1]
