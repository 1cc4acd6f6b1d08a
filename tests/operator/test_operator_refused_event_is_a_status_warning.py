"""An Event the API refuses is said in status.warnings (EventNotPosted), once per Event reason.

Item 8 of issue 17: what the user would have read is never only an operator log line. The API
here refuses every Event (as it does without RBAC for events, or past a quota); the job still
runs, and its status names each Event it could not post, deduplicated and bounded.
"""

from __future__ import annotations

import kmock

from kubetune_operator.lifecycle.event_failures import UNPOSTED_KEPT
from kubetune_sandbox import apimachinery as api
from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import Actors, wait_for
from .conftest import EVENTS, RunningOperator, status_of
from .journeys import to_running


def _unposted(cluster: ApiEmulator, name: str) -> list[str]:
    return [w["message"] for w in status_of(cluster, name).get("warnings", []) if w["reason"] == "EventNotPosted"]


async def test_refused_events_become_deduplicated_status_warnings(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    def refuse_events(request: kmock.Request) -> None:
        if request.resource == EVENTS and request.method == "POST":
            raise api.status_error(403, "Forbidden", 'events is forbidden: User "kubetune" cannot create events')

    cluster.after_write.append(refuse_events)
    await to_running(cluster, actors, "quiet")  # PreflightRunning, PreflightPassed, AttemptCreated, PodsRunning...

    said = await wait_for(lambda: len(_unposted(cluster, "quiet")) >= 3 and _unposted(cluster, "quiet"))
    first = next(m for m in said if m.startswith("Event PreflightRunning was not posted"))
    assert "403 Forbidden" in first
    assert "checking" in first, "what the Event would have said"
    assert "RBAC" in first, "what to check"
    reasons = [m.split()[1] for m in said]
    assert len(reasons) == len(set(reasons)), "one warning per Event reason"
    assert len(said) <= UNPOSTED_KEPT
    assert status_of(cluster, "quiet")["phase"] == "Running", "the job is not held back by its Events"
