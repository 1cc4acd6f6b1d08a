"""An evicted pod of an Indexed Job fails the Job at backoffLimit 0 and is never replaced, even while it terminates.

The Job controller's default podReplacementPolicy (TerminatingOrFailed) counts a pod someone else
deleted as failed from the moment it terminates: kubetune's Jobs have backoffLimit 0 because the
operator owns retries, so a replacement would run a second pod of the same attempt.
"""

from __future__ import annotations

from pathlib import Path

from .one_node import NS, condition_types, eventually, one_node, python

SLOW_TO_STOP = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(143)))\n"
    "print('ready', flush=True)\n"
    "while True: time.sleep(0.05)\n"
)
EVICTION = {"apiVersion": "policy/v1", "kind": "Eviction"}


async def test_the_evicted_index_is_not_replaced_and_the_job_fails(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        await node.create_job(
            "held", python(SLOW_TO_STOP), completionMode="Indexed", completions=1, parallelism=1,
            pod={"terminationGracePeriodSeconds": 10},
        )  # fmt: skip
        (pod,) = await eventually(lambda: node.pods_of("held"), what="the pod")
        name = pod["metadata"]["name"]
        await eventually(lambda: "ready" in node.log_text(name), what="the pod to run")

        eviction = {**EVICTION, "metadata": {"name": name, "namespace": NS}}
        async with node.emulator.post(f"/api/v1/namespaces/{NS}/pods/{name}/eviction", json=eviction) as answer:
            assert answer.status == 201
        await eventually(lambda: ("Failed", "True", "BackoffLimitExceeded") in condition_types(node.job("held")))

        created = [r for r in node.emulator.writes() if r.method.value == "POST" and r.url.path.endswith("/pods")]
        assert len(created) == 1
        assert node.job("held")["status"]["failed"] == 1
        assert node.pods_of("held") == []  # the kubelet removed it once it stopped
