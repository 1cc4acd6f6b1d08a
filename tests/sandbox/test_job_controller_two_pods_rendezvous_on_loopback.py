"""Two pods of an Indexed Job, one torchrun each, meet through their headless Service's name on loopback.

The c10d endpoint `<job>-0.<service>:<port>` is rewritten to one loopback port for both pods;
torch's c10d backend hosts the store in whichever agent binds it first and the other joins as a
client, and the two workers all-reduce over gloo.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubetune_operator.kube.resources import CONFIGMAPS, SERVICES

from .one_node import NS, condition_types, eventually, one_node, terminated

ALL_REDUCE = """\
import os, pathlib
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
total = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(total)
pathlib.Path(os.environ["RESULT"]).write_text(f"rank {dist.get_rank()} of {dist.get_world_size()}: {total.item():.0f}")
dist.destroy_process_group()
"""
TORCHRUN = [
    "torchrun", "--nnodes", "2", "--nproc-per-node", "1",
    "--rdzv-backend", "c10d", "--rdzv-endpoint", "ring-0.ring:29500", "--rdzv-id", "ring",
    "/etc/app/all_reduce.py",
]  # fmt: skip


async def test_two_torchrun_pods_all_reduce_through_the_service_name(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        script = {"metadata": {"name": "ring-script"}, "data": {"all_reduce.py": ALL_REDUCE}}
        await node.client.create(CONFIGMAPS, script, namespace=NS)
        service = {"metadata": {"name": "ring"}, "spec": {"clusterIP": "None", "ports": [{"port": 29500}]}}
        await node.client.create(SERVICES, service, namespace=NS)
        await node.create_job(
            "ring", TORCHRUN, completionMode="Indexed", completions=2, parallelism=2,
            container={
                "env": [{"name": "RESULT", "value": "/dev/termination-log"}],
                "volumeMounts": [{"name": "script", "mountPath": "/etc/app"}],
            },
            pod={"subdomain": "ring", "volumes": [{"name": "script", "configMap": {"name": "ring-script"}}]},
        )  # fmt: skip
        await eventually(
            lambda: {"Complete", "Failed"} & {kind for kind, _, _ in condition_types(node.job("ring"))}, timeout=90
        )
        pods = node.pods_of("ring")
        logs = {p["metadata"]["name"]: node.log_text(p["metadata"]["name"])[-2000:] for p in pods}
        assert ("Complete", "True", "CompletionsReached") in condition_types(node.job("ring")), json.dumps(logs)
        messages = sorted(terminated(pod)["message"] for pod in pods)
        assert messages == ["rank 0 of 2: 3", "rank 1 of 2: 3"]
