"""The pure rule for spec.serve: ensure the objects once the job Succeeded; again only while KServe's URL is
awaited (every poll interval, for an hour); never for a job that did not succeed or whose serving failed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubetune_operator.api.status import FineTuneJobStatus
from kubetune_operator.lifecycle.serving import URL_POLL_FOR_SECONDS, serving_wanted

from .core_builders import T0, spec, stamp

POLL = 30.0


def _status(phase: str, serving: dict[str, Any] | None = None) -> FineTuneJobStatus:
    body: dict[str, Any] = {"phase": phase}
    if serving is not None:
        body["serving"] = {"name": "chat", "owned": True, "time": stamp(T0), **serving}
    return FineTuneJobStatus.parse(body)


def test_a_succeeded_job_with_serve_is_served_once() -> None:
    served = spec(serve={"kind": "vllm"})
    assert serving_wanted(served, _status("Succeeded"), now=T0, poll_seconds=POLL) == 0.0
    done = _status("Succeeded", {"kind": "vllm", "state": "Created", "url": "http://chat.ml.svc.cluster.local:8000/v1"})
    assert serving_wanted(served, done, now=T0, poll_seconds=POLL) is None


def test_nothing_is_served_before_success_without_serve_or_after_a_refusal() -> None:
    served = spec(serve={"kind": "kserve"})
    for phase in ("Running", "Failed", "Cancelled"):
        assert serving_wanted(served, _status(phase), now=T0, poll_seconds=POLL) is None
    assert serving_wanted(spec(), _status("Succeeded"), now=T0, poll_seconds=POLL) is None
    assert serving_wanted(None, _status("Succeeded"), now=T0, poll_seconds=POLL) is None
    refused = _status("Succeeded", {"kind": "kserve", "state": "Failed", "message": "404"})
    assert serving_wanted(served, refused, now=T0, poll_seconds=POLL) is None


def test_kserves_url_is_awaited_every_poll_for_an_hour() -> None:
    served = spec(serve={"kind": "kserve"})
    waiting = _status("Succeeded", {"kind": "kserve", "state": "Created"})
    assert serving_wanted(served, waiting, now=T0 + timedelta(minutes=59), poll_seconds=POLL) == POLL
    late = T0 + timedelta(seconds=URL_POLL_FOR_SECONDS)
    assert serving_wanted(served, waiting, now=late, poll_seconds=POLL) is None
    known = _status("Succeeded", {"kind": "kserve", "state": "Created", "url": "http://chat.ml.example.com"})
    assert serving_wanted(served, known, now=T0, poll_seconds=POLL) is None
