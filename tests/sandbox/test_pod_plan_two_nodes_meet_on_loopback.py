"""Two pods of a two-node attempt: the rendezvous endpoint through the headless Service becomes one loopback port."""

from __future__ import annotations

from pathlib import Path

from kubetune_operator.render.service import RENDEZVOUS_PORT
from kubetune_sandbox.layout import SandboxLayout

from .rendered_pods import TWO_NODES, plan, pod_of, rendered

LAYOUT = SandboxLayout(Path("/sandbox"))


def test_both_pods_name_the_same_loopback_rendezvous_and_their_own_index() -> None:
    objects = rendered(TWO_NODES)
    service = objects["Service"]["metadata"]["name"]
    ports: dict[tuple[str, str, int], int] = {}
    first, second = (plan(pod_of(objects["Job"], index=i), objects, layout=LAYOUT, ports=ports) for i in (0, 1))
    assert ports == {("ml", service, RENDEZVOUS_PORT): 40000}
    for index, pod in enumerate((first, second)):
        endpoint = pod.argv[pod.argv.index("--rdzv-endpoint") + 1]
        assert endpoint == "127.0.0.1:40000"
        assert pod.argv[pod.argv.index("--rdzv-id") + 1] == "support-bot-a1"  # not an address: kept
        assert pod.env["JOB_COMPLETION_INDEX"] == str(index)
        assert pod.env["HOSTNAME"] == f"support-bot-a1-{index}"
    # Each pod has its own scratch space; both share the claims.
    assert first.cwd != second.cwd
    assert Path("/sandbox/volumes/pvc/checkpoints") in first.directories
    assert Path("/sandbox/volumes/pvc/checkpoints") in second.directories


def test_an_address_of_a_service_that_does_not_exist_is_left_alone() -> None:
    objects = rendered(TWO_NODES)
    del objects["Service"]
    pod = plan(pod_of(objects["Job"], index=0), objects, layout=LAYOUT)
    assert pod.argv[pod.argv.index("--rdzv-endpoint") + 1] == f"support-bot-a1-0.support-bot-a1:{RENDEZVOUS_PORT}"
