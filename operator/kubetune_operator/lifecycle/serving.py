"""When a Succeeded job's spec.serve is acted on: once, then (KServe) until its URL is known.

The shell creates the objects (create-if-absent, stable names) and records the outcome in
status.serving, so a replayed pass finds them and a restarted operator does not make them twice.
"""

from __future__ import annotations

from datetime import datetime

from ..api.serve import ServeKind, ServingState
from ..api.spec import FineTuneJobSpec
from ..api.status import FineTuneJobStatus, Phase

URL_POLL_FOR_SECONDS = 3600.0
"""How long it looks: KServe reports the URL once the predictor is ready (weights loaded)."""


def serving_wanted(
    spec: FineTuneJobSpec | None, status: FineTuneJobStatus, *, now: datetime, poll_seconds: float
) -> float | None:
    """None when nothing is to be done; else ensure the serving objects, and look again after the value
    (0: no need to look again); `poll_seconds`: how often to look for KServe's URL."""
    if spec is None or spec.serve is None or status.phase != Phase.SUCCEEDED:
        return None
    serving = status.serving
    if serving is None:
        return 0.0
    waiting_for_url = (
        serving.kind == ServeKind.KSERVE
        and serving.state == ServingState.CREATED
        and serving.url is None
        and (now - serving.time).total_seconds() < URL_POLL_FOR_SECONDS
    )
    return poll_seconds if waiting_for_url else None
