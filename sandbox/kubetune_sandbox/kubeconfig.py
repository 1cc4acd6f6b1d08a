"""The sandbox's kubeconfig: one cluster, one user, one context, read by kubectl and `Connection.from_env`.

The CA is inlined (`certificate-authority-data`) so the file works wherever it is copied; the
token is random per sandbox (the emulator accepts any token, but clients must send one as they
would to a cluster), so the file is written 0600.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

CLUSTER = "kubetune-sandbox"
USER = "kubetune-sandbox-admin"


def kubeconfig(*, server: str, ca_pem: bytes, token: str, namespace: str = "default") -> dict[str, Any]:
    """A `kind: Config` whose current context is the sandbox, in `namespace`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": USER, "user": {"token": token}}],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": USER, "namespace": namespace}}],
        "current-context": CLUSTER,
        "preferences": {},
    }


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, token: str, namespace: str = "default") -> Path:
    """Write the kubeconfig (0600: it holds the token) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    config = kubeconfig(server=server, ca_pem=ca_pem, token=token, namespace=namespace)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
