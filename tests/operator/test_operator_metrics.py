"""Item 8: /metrics and /healthz from the operator's own registry, with no per-job label."""

from __future__ import annotations

import socket

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kubetune_operator.metrics import OperatorMetrics, metrics_app, start_metrics_server
from kubetune_sandbox.emulator import ApiEmulator

from .cluster_actors import Actors
from .conftest import RunningOperator
from .journeys import pass_preflight

ALLOWED_LABELS = {"phase", "stage", "error_class", "reason", "le"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_metrics_and_healthz_are_served_without_per_job_labels(
    cluster: ApiEmulator, actors: Actors, operator: RunningOperator
) -> None:
    await pass_preflight(cluster, actors, "counted")
    port = _free_port()
    runner = await start_metrics_server(
        metrics_app(operator.metrics, healthy=lambda: True), host="127.0.0.1", port=port
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
                text = await answer.text()
    finally:
        await runner.cleanup()
    samples = {s.name: s for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["kubetune_apply_to_pods_seconds_count"].value == 1
    assert samples["kubetune_reconcile_duration_seconds_count"].value > 0
    assert "kubetune_reconcile_errors_total" in samples
    labels = {label for family in text_string_to_metric_families(text) for s in family.samples for label in s.labels}
    assert labels <= ALLOWED_LABELS
    phases = {
        s.labels["phase"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "kubetune_jobs"
        for s in f.samples
    }
    assert phases["Queued"] == 1
    assert sum(phases.values()) == 1


async def test_healthz_says_starting_until_the_watches_are_up() -> None:
    port = _free_port()
    runner = await start_metrics_server(
        metrics_app(OperatorMetrics(), healthy=lambda: False), host="127.0.0.1", port=port
    )
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as health:
            assert health.status == 503
    finally:
        await runner.cleanup()
