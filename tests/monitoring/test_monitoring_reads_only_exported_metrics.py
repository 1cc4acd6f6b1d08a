"""Every metric the alerts and the dashboard read is one the operator or the trainer exports.

A renamed or removed metric fails here, instead of leaving a silent panel or an alert that can
never fire.
"""

from __future__ import annotations

import yaml
from prometheus_client import CollectorRegistry

from kubetune_operator.metrics import OperatorMetrics
from kubetune_trainer.metrics import TrainerMetrics

from .dashboard import load_dashboard, metric_names, panel_queries, variable_queries
from .promtool import ALERTS_FILE, alert_rules

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _exported(registry: CollectorRegistry) -> set[str]:
    """Names a scrape can show, also for labelled metrics that have no series yet."""
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]}


OPERATOR = _exported(OperatorMetrics().registry)
TRAINER = _exported(TrainerMetrics(CollectorRegistry()).registry)


def test_the_registries_export_what_the_docs_list() -> None:
    assert "kubetune_job_failures_total" in OPERATOR
    assert "kubetune_oldest_queued_job_age_seconds" in OPERATOR
    assert "kubetune_trainer_last_step_timestamp_seconds" in TRAINER


def test_every_alert_reads_exported_metrics() -> None:
    rules = alert_rules(yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8")))
    for name, rule in rules.items():
        used = metric_names(rule["expr"])
        assert used or name == "KubetuneOperatorDown", f"{name} reads no kubetune metric"
        assert used <= OPERATOR | TRAINER, f"{name} reads {sorted(used - OPERATOR - TRAINER)}, which nothing exports"


def test_every_dashboard_query_reads_exported_metrics() -> None:
    dashboard = load_dashboard()
    queries = [(q.panel, q.expr) for q in panel_queries(dashboard)]
    queries += [(f"variable {name}", query) for name, query in variable_queries(dashboard).items()]
    read: set[str] = set()
    for where, expr in queries:
        used = metric_names(expr)
        assert used <= OPERATOR | TRAINER, f"{where} reads {sorted(used - OPERATOR - TRAINER)}, which nothing exports"
        read |= used
    # The panels the chart promises: jobs by phase, stage durations, failures, retries, apply-to-pods
    # latency, the trainer's loss, tokens per second and steps.
    for promised in (
        "kubetune_jobs",
        "kubetune_job_stage_duration_seconds_bucket",
        "kubetune_job_failures_total",
        "kubetune_job_retries_total",
        "kubetune_apply_to_pods_seconds_bucket",
        "kubetune_trainer_loss",
        "kubetune_trainer_tokens_per_second",
        "kubetune_trainer_step",
    ):
        assert promised in read, f"no panel reads {promised}"
