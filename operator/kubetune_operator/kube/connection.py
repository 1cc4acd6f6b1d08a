"""Where the API server is and how to authenticate: in-cluster service account, or a kubeconfig.

The token is never logged or shown in a repr. A service-account token file is re-read when the
API answers 401, because kubelet rotates projected tokens.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class NoApiConfiguration(ValueError):
    """No usable API server configuration; the message says what to set."""


@dataclass(frozen=True)
class Connection:
    server: str
    token: str | None = field(default=None, repr=False)
    token_path: Path | None = None
    ca_path: Path | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    client_cert_path: Path | None = None
    client_key_path: Path | None = None
    insecure: bool = False
    default_namespace: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, server: str | None = None) -> Connection:
        """`server` (a flag) wins; then the in-cluster service account; then $KUBECONFIG or ~/.kube/config."""
        if server:
            return cls(server=server.rstrip("/"))
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT", "443")
        if host and (SERVICE_ACCOUNT_DIR / "token").exists():
            namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
            return cls(
                server=f"https://{host}:{port}",
                token_path=SERVICE_ACCOUNT_DIR / "token",
                ca_path=SERVICE_ACCOUNT_DIR / "ca.crt",
                default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
            )
        kubeconfig = Path(
            environ.get("KUBECONFIG", "").split(":")[0] or Path(environ.get("HOME", "/")) / ".kube/config"
        )
        if not kubeconfig.is_file():
            raise NoApiConfiguration(
                f"no Kubernetes API configuration: not in a cluster and no kubeconfig at {kubeconfig}; "
                "set KUBECONFIG or pass --server"
            )
        return cls.from_kubeconfig(yaml.safe_load(kubeconfig.read_text()) or {}, base=kubeconfig.parent)

    @classmethod
    def from_kubeconfig(cls, config: Mapping[str, Any], *, base: Path) -> Connection:
        """The current context's server, CA and token or client certificate files (no exec plugins)."""
        contexts = {c["name"]: c.get("context", {}) for c in config.get("contexts", [])}
        context = contexts.get(config.get("current-context", ""), {})
        clusters = {c["name"]: c.get("cluster", {}) for c in config.get("clusters", [])}
        users = {u["name"]: u.get("user", {}) for u in config.get("users", [])}
        cluster, user = clusters.get(context.get("cluster", ""), {}), users.get(context.get("user", ""), {})
        if "server" not in cluster:
            raise NoApiConfiguration("the kubeconfig's current context names no cluster server")

        def path(key: str, source: Mapping[str, Any]) -> Path | None:
            return base / source[key] if key in source else None

        ca_data = (
            base64.b64decode(cluster["certificate-authority-data"]) if "certificate-authority-data" in cluster else None
        )
        return cls(
            server=str(cluster["server"]).rstrip("/"),
            token=user.get("token"),
            token_path=path("tokenFile", user),
            ca_path=path("certificate-authority", cluster),
            ca_data=ca_data,
            client_cert_path=path("client-certificate", user),
            client_key_path=path("client-key", user),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
            default_namespace=context.get("namespace"),
        )

    def current_token(self) -> str | None:
        if self.token_path is not None and self.token_path.exists():
            return self.token_path.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        """False for plain http; an SSL context trusting the cluster CA otherwise."""
        if not self.server.startswith("https://"):
            return False
        context = ssl.create_default_context(cafile=str(self.ca_path) if self.ca_path else None)
        if self.ca_data is not None:
            context.load_verify_locations(cadata=self.ca_data.decode())
        if self.client_cert_path is not None:
            context.load_cert_chain(str(self.client_cert_path), str(self.client_key_path or self.client_cert_path))
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
