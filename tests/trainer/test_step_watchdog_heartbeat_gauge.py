"""`kubetune_trainer_last_step_timestamp_seconds` holds the unix time of the last completed step.

Stall alerts compare it with `time()`, so the gauge must carry each report's `heartbeat_time`
as it is, in unix seconds, and keep it while reports without a heartbeat arrive.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from kubetune_trainer.contract import Progress
from kubetune_trainer.metrics import TrainerMetrics

GAUGE = "kubetune_trainer_last_step_timestamp_seconds"


def test_gauge_carries_the_heartbeat_of_the_last_report_in_unix_seconds() -> None:
    registry = CollectorRegistry()
    metrics = TrainerMetrics(registry)
    assert registry.get_sample_value(GAUGE) == 0.0

    first = datetime(2026, 11, 22, 4, 0, 0, tzinfo=UTC)
    metrics.progress(Progress(step=1, heartbeat_time=first))
    assert registry.get_sample_value(GAUGE) == first.timestamp() == 1795320000.0

    second = datetime(2026, 11, 22, 4, 0, 7, tzinfo=UTC)
    metrics.progress(Progress(step=2, heartbeat_time=second))
    assert registry.get_sample_value(GAUGE) == second.timestamp()

    # An evaluation-only report without a heartbeat leaves the last step's time in place.
    metrics.progress(Progress(step=2, eval_loss=1.0))
    assert registry.get_sample_value(GAUGE) == second.timestamp()
