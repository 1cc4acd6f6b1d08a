"""Every Service port a pod names gets a loopback port of its own, the same one each time it is named."""

from __future__ import annotations

from kubetune_sandbox.loopback_ports import LoopbackPorts


def test_a_thousand_service_ports_get_a_thousand_loopback_ports() -> None:
    ports = LoopbackPorts()
    given = [ports.port("default", f"job-{i}", 29500) for i in range(1000)]
    assert len(set(given)) == 1000  # the kernel alone repeats free ports within a few hundred draws
    assert [ports.port("default", f"job-{i}", 29500) for i in range(1000)] == given
