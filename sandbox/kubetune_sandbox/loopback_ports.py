"""Loopback ports standing for Service ports: one per (namespace, service, port), never two alike.

A free port is found by binding port 0 and closing the socket; the kernel hands the same number
out again soon after (it is free), so a port already given to another Service port is drawn again:
two jobs' rendezvous must never share a port while their pods have not bound it yet.
"""

from __future__ import annotations

import socket

from .pod_inputs import LOOPBACK


class LoopbackPorts:
    def __init__(self) -> None:
        self._ports: dict[tuple[str, str, int], int] = {}

    def port(self, namespace: str, service: str, port: int) -> int:
        """The loopback port for the Service port, the same for every pod that names it."""
        key = (namespace, service, port)
        if key not in self._ports:
            taken = set(self._ports.values())
            while (found := _free_port()) in taken:
                pass
            self._ports[key] = found
        return self._ports[key]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])
