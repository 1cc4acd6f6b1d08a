"""kubetune_job_failures_total has every (error_class, stage) series at 0 from the operator's start.

KubetuneJobFailureRateHigh sums `increase(...[1h])`. Prometheus sees no increase in a series whose
first sample is already 1, so a counter created lazily at the first failure of a class and stage
hides that failure: four Internal failures in four different stages summed to an increase of 0
and the alert never fired. The promtool unit tests start these series at 0; this keeps the
operator exporting them that way.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kubetune_operator.metrics import OperatorMetrics
from kubetune_trainer.contract import ErrorClass, Stage


def _failure_series(metrics: OperatorMetrics) -> dict[tuple[str, str], float]:
    exposition = metrics.exposition().decode()
    return {
        (sample.labels["error_class"], sample.labels["stage"]): sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "kubetune_job_failures"
        for sample in family.samples
        if sample.name == "kubetune_job_failures_total"
    }


def test_every_class_and_stage_is_exported_at_zero_before_any_failure() -> None:
    series = _failure_series(OperatorMetrics())
    stages = [stage.value for stage in Stage] + ["None"]  # "None": failed before any stage (preflight, spec)
    assert series == {(error_class.value, stage): 0.0 for error_class in ErrorClass for stage in stages}


def test_a_failure_increments_its_existing_series() -> None:
    metrics = OperatorMetrics()
    metrics.failures.labels(error_class=ErrorClass.INTERNAL.value, stage=str(Stage.TRAINING)).inc()
    series = _failure_series(metrics)
    assert series[(ErrorClass.INTERNAL.value, Stage.TRAINING.value)] == 1.0
    assert sum(series.values()) == 1.0
