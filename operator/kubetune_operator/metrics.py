"""Operator metrics in their own registry, served with `/healthz` by a small aiohttp server.

No label is per job (no job names): cardinality stays bounded however many jobs run. The one
namespace label (GPU-hours) is bounded by the namespaces that run jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from kubetune_trainer.contract import ErrorClass, Stage

from .api.status import Phase

_STAGE_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800)
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_APPLY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def _utc_now() -> datetime:
    return datetime.now(tz=UTC)


class OperatorMetrics:
    """The operator's instruments; jobs by phase are counted from what each job last reported."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock = clock
        self.jobs = Gauge("kubetune_jobs", "FineTuneJobs by phase.", ["phase"], registry=self.registry)
        self.stage_duration = Histogram(
            "kubetune_job_stage_duration_seconds",
            "Duration of trainer stages, as the trainer reported them.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.failures = Counter(
            "kubetune_job_failures_total",
            "Failed attempts by error class and stage.",
            ["error_class", "stage"],
            registry=self.registry,
        )
        self.retries = Counter(
            "kubetune_job_retries_total", "Retries started, by reason.", ["reason"], registry=self.registry
        )
        self.gpu_hours = Counter(
            "kubetune_gpu_hours",
            "GPU-hours held by trainer pods (status.gpuSeconds / 3600), by namespace.",
            ["namespace"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "kubetune_reconcile_duration_seconds",
            "Time one reconcile pass of one FineTuneJob takes.",
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "kubetune_reconcile_errors_total", "Reconcile passes that raised.", registry=self.registry
        )
        self.apply_to_pods = Histogram(
            "kubetune_apply_to_pods_seconds",
            "Time from a FineTuneJob's creation to its trainer Job being created.",
            buckets=_APPLY_BUCKETS,
            registry=self.registry,
        )
        # An age, not a per-job series: the stuck-queue alert needs only the longest wait.
        self.oldest_queued_age = Gauge(
            "kubetune_oldest_queued_job_age_seconds",
            "Seconds the longest-waiting Queued FineTuneJob has waited since its Scheduled condition "
            "last changed (created, unschedulable, awaiting admission, retry backoff); 0 when none is queued.",
            registry=self.registry,
        )
        self.oldest_queued_age.set_function(self._oldest_queued_age)
        self._phases: dict[Hashable, str] = {}
        self._queued_since: dict[Hashable, datetime] = {}
        for phase in Phase:
            self.jobs.labels(phase=phase.value).set(0)
        # Every stage's series exists from the start, so a rate over the first observation is not empty.
        for stage in Stage:
            self.stage_duration.labels(stage=stage.value)
        # Likewise every failure series, at 0: increase() sees nothing in a series born at 1, so the
        # first failure of each class and stage would escape the failure-rate alert. "None": a
        # failure before any stage (the spec, the preflight).
        for error_class in ErrorClass:
            for failed_in in [*(stage.value for stage in Stage), "None"]:
                self.failures.labels(error_class=error_class.value, stage=failed_in)

    def job_phase(self, key: Hashable, phase: str | None, *, queued_since: datetime | None = None) -> None:
        """Record a job's phase (None: the job is gone) and, while it is Queued, since when it waits.

        The gauges follow without per-job labels.
        """
        previous = self._phases.pop(key, None)
        if previous is not None:
            self.jobs.labels(phase=previous).dec()
        if phase is not None:
            self._phases[key] = phase
            self.jobs.labels(phase=phase).inc()
        if queued_since is not None and phase == Phase.QUEUED:
            self._queued_since[key] = queued_since
        else:
            self._queued_since.pop(key, None)

    def _oldest_queued_age(self) -> float:
        waiting = list(self._queued_since.values())  # a scrape may come from another thread (tests)
        return max(0.0, (self._clock() - min(waiting)).total_seconds()) if waiting else 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: OperatorMetrics, *, healthy: Callable[[], bool]) -> web.Application:
    """`/metrics` (Prometheus text) and `/healthz` (200 while the operator's watches are up)."""

    async def serve_metrics(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def serve_health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n") if healthy() else web.Response(status=503, text="starting\n")

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", serve_health)
    return app


async def start_metrics_server(app: web.Application, *, host: str, port: int) -> web.AppRunner:
    """Serve `app`; the caller cleans the returned runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host=host, port=port).start()
    return runner
