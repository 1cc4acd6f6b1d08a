"""Eviction through the API: SIGTERM to the pod's processes, the grace period honoured, then the pod goes.

The pod's final status is what the operator reads as a preemption: a DisruptionTarget condition
(EvictionByEvictionAPI), phase Failed, reason Evicted, and the container's own last words.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from kubetune_operator.kube.resources import PODS
from kubetune_operator.observe.pod_state import PodView
from kubetune_trainer.contract import ErrorClass

from .one_node import NS, eventually, group_exists, one_node, python, terminated

CHECKPOINT_ON_SIGTERM = (
    "import os, pathlib, signal, sys, time\n"
    "def stop(signum, frame):\n"
    "    time.sleep(0.3)  # a checkpoint's worth of work after the signal\n"
    "    pathlib.Path(os.environ['RESULT']).write_text('stopped by SIGTERM')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(0.05)\n"
)
IGNORE_SIGTERM = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
)
RESULT_ENV = {"env": [{"name": "RESULT", "value": "/dev/termination-log"}]}
EVICTION = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "victim", "namespace": NS}}


async def test_an_evicted_pod_gets_sigterm_finishes_its_work_and_is_removed(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod(
            "victim", python(CHECKPOINT_ON_SIGTERM), terminationGracePeriodSeconds=20, container=RESULT_ENV
        )
        await eventually(lambda: "ready" in node.log_text("victim"), what="the pod to start")
        (record,) = node.runner.live_processes()

        async with node.emulator.post(f"/api/v1/namespaces/{NS}/pods/victim/eviction", json=EVICTION) as answer:
            assert answer.status == 201
        await eventually(lambda: node.pod("victim") is None, what="the evicted pod to go")

        pod = node.last_status("victim", "Failed")
        assert pod["status"]["reason"] == "Evicted"
        disruption = [c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        assert [(c["status"], c["reason"]) for c in disruption] == [("True", "EvictionByEvictionAPI")]
        state = terminated(pod)
        assert (state["exitCode"], state["message"]) == (0, "stopped by SIGTERM")  # it had time to finish
        view = PodView.of(pod, now=datetime.now(tz=UTC), image_pull_grace=300)
        assert view.error is not None
        assert (view.error.error_class, view.error.reason, view.error.retryable) == (
            ErrorClass.INTERNAL, "Preempted", True,
        )  # fmt: skip
        assert not group_exists(record.pid)


async def test_a_pod_that_ignores_sigterm_is_killed_after_its_grace_period(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        await node.create_pod("stubborn", python(IGNORE_SIGTERM), terminationGracePeriodSeconds=1)
        await eventually(lambda: "ready" in node.log_text("stubborn"), what="the pod to start")
        (record,) = node.runner.live_processes()

        started = time.monotonic()
        await node.client.delete(PODS, namespace=NS, name="stubborn")
        marked = node.pod("stubborn")
        assert marked is not None
        assert marked["metadata"]["deletionGracePeriodSeconds"] == 1
        await eventually(lambda: node.pod("stubborn") is None, what="the killed pod to go")
        assert time.monotonic() - started >= 1.0
        assert terminated(node.last_status("stubborn", "Failed"))["exitCode"] == 137
        assert not group_exists(record.pid)
