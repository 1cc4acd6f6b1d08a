"""`kubectl create secret generic` and `kubectl create configmap` against the sandbox's API, with the real kubectl.

kubectl sends those built-in objects as protobuf: the emulator stores what they carry, readable by
`kubectl get -o json` and by a pod's env (secretKeyRef), as a cluster would. A protobuf body the
sandbox cannot read is a 415 naming the kind, never a silent half-read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest

from kubetune_sandbox import protobuf_bodies
from kubetune_sandbox.emulator import ApiEmulator

from ..kubectl import kubectl

NS = "ml"


@pytest.fixture
async def cluster() -> AsyncIterator[ApiEmulator]:
    emulator = ApiEmulator(namespaces={"default", NS})
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        yield emulator


async def _get(cluster: ApiEmulator, kind: str, name: str) -> dict[str, object]:
    code, output = await kubectl(cluster.url, "get", kind, name, "-n", NS, "-o", "json")
    assert code == 0, output
    found: dict[str, object] = json.loads(output)
    return found


async def test_kubectl_create_secret_generic_from_literal_and_file(cluster: ApiEmulator, tmp_path: Path) -> None:
    (tmp_path / "token.bin").write_bytes(b"\x00\xffbinary")
    code, output = await kubectl(
        cluster.url, "create", "secret", "generic", "hf-token", "-n", NS,
        "--from-literal=token=hf_abc", f"--from-file=raw={tmp_path / 'token.bin'}",
    )  # fmt: skip
    assert (code, output.strip()) == (0, "secret/hf-token created"), output
    secret = await _get(cluster, "secret", "hf-token")
    assert secret["data"] == {
        "token": base64.b64encode(b"hf_abc").decode(),
        "raw": base64.b64encode(b"\x00\xffbinary").decode(),
    }
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["namespace"] == NS  # type: ignore[index]


async def test_kubectl_create_secret_with_a_type(cluster: ApiEmulator) -> None:
    code, output = await kubectl(
        cluster.url, "create", "secret", "generic", "typed", "-n", NS, "--type=kubetune.dev/hub-token",
        "--from-literal=token=x",
    )  # fmt: skip
    assert code == 0, output
    assert (await _get(cluster, "secret", "typed"))["type"] == "kubetune.dev/hub-token"


async def test_kubectl_create_configmap_from_literals(cluster: ApiEmulator) -> None:
    code, output = await kubectl(
        cluster.url, "create", "configmap", "settings", "-n", NS, "--from-literal=a=1", "--from-literal=b=two words"
    )
    assert (code, output.strip()) == (0, "configmap/settings created")
    configmap = await _get(cluster, "configmap", "settings")
    assert configmap["data"] == {"a": "1", "b": "two words"}
    assert configmap["metadata"]["name"] == "settings"  # type: ignore[index]


async def test_kubectl_create_configmap_from_a_binary_file_is_binary_data(cluster: ApiEmulator, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01\xfe\xff")
    (tmp_path / "notes.txt").write_text("plain text\n")
    code, output = await kubectl(
        cluster.url, "create", "configmap", "files", "-n", NS,
        f"--from-file={tmp_path / 'weights.bin'}", f"--from-file={tmp_path / 'notes.txt'}",
    )  # fmt: skip
    assert code == 0, output
    configmap = await _get(cluster, "configmap", "files")
    assert configmap["binaryData"] == {"weights.bin": base64.b64encode(b"\x00\x01\xfe\xff").decode()}
    assert configmap["data"] == {"notes.txt": "plain text\n"}


async def test_a_second_create_is_already_exists_as_in_a_cluster(cluster: ApiEmulator) -> None:
    assert (await kubectl(cluster.url, "create", "configmap", "once", "-n", NS, "--from-literal=a=1"))[0] == 0
    code, output = await kubectl(cluster.url, "create", "configmap", "once", "-n", NS, "--from-literal=a=1")
    assert code != 0
    assert 'configmaps "once" already exists' in output


async def test_a_protobuf_kind_the_sandbox_cannot_read_is_415_naming_it(cluster: ApiEmulator) -> None:
    code, output = await kubectl(cluster.url, "create", "serviceaccount", "runner", "-n", NS)
    assert code != 0
    assert "ServiceAccount (v1) is not one of Secret, ConfigMap" in output


def test_a_body_without_the_magic_is_refused() -> None:
    with pytest.raises(kmock.KubernetesError, match="does not start with the Kubernetes protobuf magic"):
        protobuf_bodies.read_object(b'{"kind": "Secret"}')


async def test_a_secret_gets_the_api_servers_defaults(cluster: ApiEmulator) -> None:
    """type Opaque, and stringData folded into data (what `kubectl apply` of a stringData Secret relies on)."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "plain"}, "stringData": {"token": "t0k"}}
    async with cluster.post(f"/api/v1/namespaces/{NS}/secrets", json=secret) as made:
        assert made.status == 201, await made.text()
    stored = await _get(cluster, "secret", "plain")
    assert (stored["type"], stored["data"], "stringData" in stored) == (
        "Opaque",
        {"token": base64.b64encode(b"t0k").decode()},
        False,
    )
