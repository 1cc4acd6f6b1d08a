"""`kubectl logs --tail` (and `kubectl logs -l`, whose default tail is 10) as the API server serves it.

A tail longer than the log is the whole log, never a wrap-around: a 7-line log asked for its last
10 lines gives all 7.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import pytest

from kubetune_sandbox import apimachinery as api
from kubetune_sandbox.emulator import ApiEmulator

from ..kubectl import kubectl

NS = "default"
SEVEN = "".join(f"line {n}\n" for n in range(1, 8))


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (None, SEVEN),
        ("-1", SEVEN),
        ("0", ""),
        ("3", "line 5\nline 6\nline 7\n"),
        ("7", SEVEN),
        ("10", SEVEN),
        ("1000", SEVEN),
    ],
)
def test_tail_lines_never_wraps(tail: str | None, expected: str) -> None:
    assert api.tail_lines(SEVEN, tail) == expected


def test_tail_lines_refuses_a_non_integer() -> None:
    with pytest.raises(kmock.KubernetesError, match="tailLines must be an integer"):
        api.tail_lines(SEVEN, "ten")


@pytest.fixture
async def cluster() -> AsyncIterator[ApiEmulator]:
    logs = {(NS, "trainer-0"): SEVEN}
    emulator = ApiEmulator(pod_log=lambda namespace, name: logs.get((namespace, name)))
    async with emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "trainer-0", "labels": {"kubetune.dev/job": "quickstart"}},
            "spec": {"containers": [{"name": "trainer", "image": "trainer"}]},
        }
        async with emulator.post(f"/api/v1/namespaces/{NS}/pods", json=pod) as made:
            assert made.status == 201, await made.text()
        yield emulator


async def test_kubectl_logs_with_a_selector_prints_every_line_of_a_short_log(cluster: ApiEmulator) -> None:
    assert await kubectl(cluster.url, "logs", "-l", "kubetune.dev/job=quickstart") == (0, SEVEN)
    assert await kubectl(cluster.url, "logs", "trainer-0", "--tail=10") == (0, SEVEN)
    assert await kubectl(cluster.url, "logs", "trainer-0", "--tail=2") == (0, "line 6\nline 7\n")
