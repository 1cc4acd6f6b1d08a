"""Container paths and Service addresses in a pod's values -> host paths and loopback ports. Pure.

A value is rewritten when the whole of it (or a `--flag=` value) names a path under a mount, the
termination log or the ServiceAccount directory; `<pod>.<service>[.<namespace>.svc[.cluster.local]]:<port>`
of an existing Service becomes 127.0.0.1 and the host port standing for that Service port.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .pod_inputs import LOOPBACK

HostPort = Callable[[str, str, int], int]
"""(namespace, service, port) -> the loopback port standing for that Service port."""
_SERVICE_ADDRESS = re.compile(
    r"\b(?P<host>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.(?P<service>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
    r"(?:\.(?P<namespace>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc(?:\.cluster\.local)?)?:(?P<port>\d{1,5})\b"
)


class Rewriter:
    """Container paths and Service addresses in values -> host paths and loopback ports."""

    def __init__(
        self, paths: list[tuple[str, Path]], *, namespace: str, services: set[tuple[str, str]], host_port: HostPort
    ) -> None:
        # The deepest mount first: /work/out under a /work mount belongs to the /work/out mount.
        self._paths = sorted(paths, key=lambda pair: len(pair[0]), reverse=True)
        self._namespace = namespace
        self._services = services
        self._host_port = host_port

    def value(self, text: str) -> str:
        return self._addresses(self._path(text))

    def argument(self, text: str) -> str:
        if text.startswith("-") and "=" in text:
            flag, value = text.split("=", 1)
            return f"{flag}={self.value(value)}"
        return self.value(text)

    def document(self, content: bytes, *, yaml_file: bool) -> bytes:
        """String values rewritten inside a JSON or YAML document; anything else is kept as it is."""
        try:
            data = yaml.safe_load(content) if yaml_file else json.loads(content)
        except (ValueError, yaml.YAMLError):
            return content
        rewritten = self._structure(data)
        if yaml_file:
            return yaml.safe_dump(rewritten, sort_keys=False).encode()
        return json.dumps(rewritten, indent=2).encode()

    def _structure(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.value(data)
        if isinstance(data, list):
            return [self._structure(item) for item in data]
        if isinstance(data, dict):
            return {key: self._structure(item) for key, item in data.items()}
        return data

    def _path(self, text: str) -> str:
        if not text.startswith("/"):
            return text
        for container, host in self._paths:
            if text == container:
                return str(host)
            if text.startswith(container.rstrip("/") + "/"):
                return f"{host}{text[len(container.rstrip('/')) :]}"
        return text

    def _addresses(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            namespace = match["namespace"] or self._namespace
            if (namespace, match["service"]) not in self._services:
                return match[0]
            return f"{LOOPBACK}:{self._host_port(namespace, match['service'], int(match['port']))}"

        return _SERVICE_ADDRESS.sub(replace, text)
