"""The webhook certificate the chart generates works: kopf's webhook server (as the operator starts it
from the mounted Secret) serves it, and a client trusting only the configuration's caBundle reaches it
under the Service's DNS name, as the API server does."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import pytest
from aiohttp.abc import ResolveResult

from .chart import NAMESPACE, of_kind, render


def _webhook_objects() -> tuple[dict[str, bytes], dict[str, Any]]:
    objects = render({"webhook": {"enabled": True}})
    (secret,) = of_kind(objects, "Secret")
    (config,) = of_kind(objects, "ValidatingWebhookConfiguration")
    files = {name: base64.b64decode(value) for name, value in secret["data"].items()}
    return files, config["webhooks"][0]


async def _post(url: str, *, trust: ssl.SSLContext, hostname: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(ssl=trust, resolver=_Loopback(hostname))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=json.dumps({"request": {"uid": "1"}})) as answer,
    ):
        assert answer.status == 200
        body: dict[str, Any] = await answer.json()
        return body


async def test_the_api_server_view_of_the_webhook_verifies_the_served_certificate(tmp_path: Path) -> None:
    files, webhook = _webhook_objects()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    service = webhook["clientConfig"]["service"]
    assert service["namespace"] == NAMESPACE
    hostname = f"{service['name']}.{service['namespace']}.svc"  # what the API server dials
    seen: list[str | None] = []

    async def review(
        request: Any,
        *,
        webhook: str | None = None,
        headers: dict[str, str] | None = None,
        sslpeer: dict[str, Any] | None = None,
    ) -> Any:
        seen.append(webhook)
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"allowed": True}}

    server = kopf.WebhookServer(
        addr="127.0.0.1", port=0, certfile=str(tmp_path / "tls.crt"), pkeyfile=str(tmp_path / "tls.key")
    )
    trust = ssl.create_default_context(cadata=base64.b64decode(webhook["clientConfig"]["caBundle"]).decode())
    other_ca, _ = _webhook_objects()  # another render: another CA
    async for client_config in server(review):
        port = int(str(client_config.get("url")).rsplit(":", 1)[1])
        answer = await _post(f"https://{hostname}:{port}{service['path']}", trust=trust, hostname=hostname)
        assert answer["response"]["allowed"] is True

        stranger = ssl.create_default_context(cadata=other_ca["ca.crt"].decode())
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _post(f"https://{hostname}:{port}{service['path']}", trust=stranger, hostname=hostname)
        elsewhere = f"{service['name']}.default.svc"  # not a name the certificate holds
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _post(f"https://{elsewhere}:{port}{service['path']}", trust=trust, hostname=elsewhere)
        break
    assert seen == ["validate-finetunejob"], "the path names the operator's handler id"


class _Loopback(aiohttp.abc.AbstractResolver):
    """Resolves the Service's DNS name to 127.0.0.1, keeping the name for TLS verification (SNI)."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        assert host == self.hostname
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None
