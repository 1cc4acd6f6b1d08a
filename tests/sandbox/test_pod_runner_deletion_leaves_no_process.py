"""Deleting or killing a pod leaves none of its processes behind, children included."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kubetune_operator.kube.resources import PODS

from .one_node import NS, eventually, group_exists, one_node, python, terminated

# The pod's main process starts a child that would outlive it: the container's processes go together.
WITH_A_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('child', child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _child_pid(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("child "):
            return int(line.split()[1])
    return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie waiting for its reaper has stopped running


async def test_a_deleted_pod_leaves_no_process(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("doomed", python(WITH_A_CHILD), terminationGracePeriodSeconds=5)
        child = await eventually(lambda: _child_pid(node.log_text("doomed")), what="the child process")
        (record,) = node.runner.live_processes()
        assert _alive(child)

        await node.client.delete(PODS, namespace=NS, name="doomed")
        await eventually(lambda: node.pod("doomed") is None, what="the pod to go")
        assert node.runner.live_processes() == []
        await eventually(lambda: not group_exists(record.pid), what="the process group to go", timeout=30)
        assert not _alive(child)
        # SIGTERM ended it within its grace: 128 + 15.
        assert terminated(node.last_status("doomed", "Failed"))["exitCode"] == 143


IGNORES_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(600)\n"
)


async def test_a_forced_delete_cuts_a_long_grace_short(tmp_path: Path) -> None:
    """`kubectl delete pod --force --grace-period=0` on a pod that ignores SIGTERM: SIGKILL now, not in 300 s."""
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("stuck", python(IGNORES_SIGTERM), terminationGracePeriodSeconds=300)
        await eventually(lambda: "up" in node.log_text("stuck"), what="the pod to start")
        (record,) = node.runner.live_processes()

        await node.client.delete(PODS, namespace=NS, name="stuck")
        await asyncio.sleep(1.0)
        assert group_exists(record.pid)  # SIGTERM ignored: it would run out its 300 s

        await node.client.delete(PODS, namespace=NS, name="stuck", grace_period_seconds=0)
        await eventually(lambda: not group_exists(record.pid), what="the forced delete to kill it", timeout=30)
        assert node.pod("stuck") is None
        # The runner notes the exit when it reaps the process, a moment after the group is gone.
        await eventually(lambda: node.runner.live_processes() == [], what="the runner to see the exit", timeout=5)


async def test_a_killed_pod_fails_at_once_with_exit_137(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("crashed", python(WITH_A_CHILD), terminationGracePeriodSeconds=30)
        child = await eventually(lambda: _child_pid(node.log_text("crashed")), what="the child process")
        (record,) = node.runner.live_processes()

        await node.runner.kill(NS, "crashed")
        await eventually(lambda: (node.pod("crashed") or {}).get("status", {}).get("phase") == "Failed")
        pod = node.pod("crashed")
        state = terminated(pod)
        assert (state["exitCode"], state["reason"]) == (137, "Error")
        assert pod is not None
        assert "deletionTimestamp" not in pod["metadata"]  # killed, not deleted: the pod stays, Failed
        await eventually(lambda: not group_exists(record.pid), what="the process group to go", timeout=30)
        assert not _alive(child)


async def test_stop_kills_every_pod(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        for name in ("a", "b"):
            await node.create_pod(name, python("import time; time.sleep(60)"))
        await eventually(lambda: len(node.runner.live_processes()) == 2, what="both pods to run")
        groups = [record.pid for record in node.runner.live_processes()]
        await node.runner.stop()
        assert node.runner.live_processes() == []
        assert not any(group_exists(pgid) for pgid in groups)


# torchrun's way: the worker runs in a session of its own, out of reach of the pod's process group.
WITH_A_CHILD_IN_ITS_OWN_SESSION = WITH_A_CHILD.replace(
    "'import time; time.sleep(60)'])", "'import time; time.sleep(60)'], start_new_session=True)"
)


async def test_a_killed_pod_leaves_no_child_that_left_its_process_group(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("agent", python(WITH_A_CHILD_IN_ITS_OWN_SESSION), terminationGracePeriodSeconds=30)
        child = await eventually(lambda: _child_pid(node.log_text("agent")), what="the child process")
        assert _alive(child)

        await node.runner.kill(NS, "agent")
        await eventually(lambda: (node.pod("agent") or {}).get("status", {}).get("phase") == "Failed")
        await eventually(lambda: not _alive(child), what="the child in its own session to go", timeout=30)
