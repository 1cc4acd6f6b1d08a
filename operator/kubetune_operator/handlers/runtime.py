"""Run the operator: kopf with a fresh registry, our API client, the reconcile queue and the metrics server.

`run_operator` returns when cancelled (or when kopf stops); everything it started stops with it,
so an in-process test can stop the operator after any API call by cancelling one task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import kopf

from ..controller.cache import ClusterView, JobKey
from ..controller.reconciler import Reconciler
from ..controller.workqueue import ReconcileQueue
from ..kube import Connection, KubeClient
from ..metrics import OperatorMetrics, metrics_app, start_metrics_server
from ..settings import OperatorSettings
from .registry import build_registry

logger = logging.getLogger(__name__)
STORAGE_PREFIX = "kubetune.dev"


@dataclass(frozen=True)
class RunOptions:
    """How the operator process runs (the flags of `python -m kubetune_operator`)."""

    namespaces: Collection[str] = ()
    peering: str | None = None
    priority: int = 0
    metrics_host: str = "0.0.0.0"  # scraped from outside the pod
    metrics_port: int | None = 8080


def kopf_settings() -> kopf.OperatorSettings:
    """kopf's own bookkeeping under kubetune.dev annotations; kopf posts only warnings as Events."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    return settings


def _utc_now() -> datetime:
    return datetime.now(tz=UTC)


async def run_operator(
    *,
    settings: OperatorSettings,
    connection: Connection,
    options: RunOptions,
    metrics: OperatorMetrics | None = None,
    clock: Callable[[], datetime] = _utc_now,
    kopf_config: kopf.OperatorSettings | None = None,
    ready: asyncio.Event | None = None,
    extend: Callable[[kopf.OperatorRegistry, kopf.OperatorSettings], None] | None = None,
) -> None:
    """Run until cancelled. `extend` adds handlers and settings (the optional webhook) before kopf starts."""
    config = kopf_config if kopf_config is not None else kopf_settings()
    ready = ready if ready is not None else asyncio.Event()  # kopf raises it once it is up: /healthz
    metrics = metrics if metrics is not None else OperatorMetrics()
    view = ClusterView()

    def failed(key: JobKey, error: Exception) -> None:
        metrics.reconcile_errors.inc()
        logger.error("reconciling %s failed: %s: %s", key, type(error).__name__, error)

    async with KubeClient(connection) as client:
        reconcile = Reconciler(view=view, client=client, settings=settings, metrics=metrics, clock=clock)
        queue = ReconcileQueue(reconcile, on_error=failed)
        registry = build_registry(view=view, queue=queue, connection=connection)
        if extend is not None:
            extend(registry, config)
        server = None
        if options.metrics_port is not None:
            app = metrics_app(metrics, healthy=ready.is_set)
            server = await start_metrics_server(app, host=options.metrics_host, port=options.metrics_port)
        try:
            await kopf.operator(
                registry=registry,
                settings=config,
                standalone=options.peering is None,
                peering_name=options.peering,
                priority=options.priority,
                clusterwide=not options.namespaces,
                namespaces=list(options.namespaces),
                ready_flag=ready,
                memo=kopf.Memo(),
            )
        finally:
            await queue.close()
            if server is not None:
                await server.cleanup()
