"""Secret volume files and the ServiceAccount token sit in a pod directory only its user can enter.

On a node they live under the kubelet's root-only directory; in the sandbox the pod directory is
under the workdir, which the umask usually leaves readable by every local user.
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from kubetune_sandbox.client import SECRETS

from .one_node import NS, eventually, one_node, python

SECRET_VOLUME = {
    "env": [{"name": "KEY_FILE", "value": "/etc/creds/key"}],
    "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}],
}


async def test_the_pod_directory_is_the_owners_alone(tmp_path: Path) -> None:
    async with one_node(tmp_path, controller=False) as node:
        secret = {"metadata": {"name": "creds"}, "data": {"key": base64.b64encode(b"hunter2").decode()}}
        await node.client.create(SECRETS, secret, namespace=NS)
        read = "import os, pathlib; print(pathlib.Path(os.environ['KEY_FILE']).read_text())"
        await node.create_pod(
            "private",
            python(read),
            container=SECRET_VOLUME,
            volumes=[{"name": "creds", "secret": {"secretName": "creds"}}],
        )
        await eventually(lambda: (node.pod("private") or {}).get("status", {}).get("phase") == "Succeeded")

        pod_dir = tmp_path / "pods" / NS / "private"
        assert (pod_dir / "volumes" / "creds" / "key").read_bytes() == b"hunter2"
        assert (pod_dir / "serviceaccount" / "token").read_bytes() == b"t"
        assert stat.S_IMODE(pod_dir.stat().st_mode) == 0o700
        assert node.log_text("private").strip() == "hunter2"
