"""The trainer finds its ServiceAccount files where `KUBETUNE_SERVICE_ACCOUNT_DIR` says (the sandbox's pods)."""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.kube_report import SERVICE_ACCOUNT_DIR, InClusterAccess

SERVICE = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}


def test_the_token_and_ca_come_from_the_named_directory(tmp_path: Path) -> None:
    access = InClusterAccess.from_env({**SERVICE, "KUBETUNE_SERVICE_ACCOUNT_DIR": str(tmp_path)})
    assert access.server == "https://127.0.0.1:6443"
    assert access.token_file == tmp_path / "token"
    assert access.ca_file == tmp_path / "ca.crt"


def test_in_a_cluster_the_kubernetes_path_is_used() -> None:
    access = InClusterAccess.from_env(SERVICE)
    assert access.token_file == SERVICE_ACCOUNT_DIR / "token"
    assert access.ca_file == Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
