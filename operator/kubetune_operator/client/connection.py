"""Reaching the cluster from a user's machine or a pod, through the `kubernetes` library.

The library reads every kind of kubeconfig: tokens, client certificates, exec plugins (EKS's
`aws eks get-token`, GKE's `gke-gcloud-auth-plugin`), OIDC and auth-provider entries, several files
in $KUBECONFIG, and the in-cluster ServiceAccount. Nothing here logs or keeps a credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from .. import __version__

USER_AGENT = f"kubetune-client/{__version__}"

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class NoCluster(RuntimeError):
    """No usable cluster configuration; the message says what to set."""


@dataclass(frozen=True)
class ClusterAccess:
    api: k8s.ApiClient
    namespace: str
    """The namespace a client works in when none is named: the context's, else `default`."""


def connect(*, kubeconfig: str | Path | None = None, context: str | None = None) -> ClusterAccess:
    """A kubeconfig when one is named or found ($KUBECONFIG, ~/.kube/config); in a pod, its ServiceAccount."""
    config_file = str(kubeconfig) if kubeconfig is not None else None
    try:
        api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=config_file, context=context, persist_config=False
        )
    except (ConfigException, FileNotFoundError, OSError) as kubeconfig_error:
        if kubeconfig is not None or context is not None:
            raise NoCluster(f"cannot use the kubeconfig {config_file or '$KUBECONFIG'}: {kubeconfig_error}") from None
        try:
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            raise NoCluster(
                "no Kubernetes configuration: not in a pod and no kubeconfig; set KUBECONFIG or pass kubeconfig="
            ) from None
        namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if _SERVICE_ACCOUNT_NAMESPACE.exists() else "default"
        in_cluster = k8s.ApiClient(configuration)
        in_cluster.user_agent = USER_AGENT
        return ClusterAccess(api=in_cluster, namespace=namespace)
    api.user_agent = USER_AGENT
    return ClusterAccess(api=api, namespace=_context_namespace(config_file, context) or "default")


def _context_namespace(config_file: str | None, context: str | None) -> str | None:
    contexts: list[dict[str, Any]]
    contexts, active = k8s_config.list_kube_config_contexts(config_file=config_file)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else None
