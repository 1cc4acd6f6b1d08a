"""A real Prometheus scrapes the real operator through a job's lifecycle and a real trainer run.

The kopf operator runs against the API emulator with its own metrics server (`--metrics-port`);
a tiny training run serves rank 0's metrics as a trainer pod does. Prometheus runs the scrape
config of docs/monitoring.md, its Kubernetes discovery replaced by the targets and labels the
pod role would find for the chart's operator pod and the operator's real trainer pod, so the
documented relabelings produce the labels the dashboard reads. Once the lifecycle is over (one
job retried after an Internal failure, then Succeeded; another left Queued), every dashboard
query, filled in as Grafana fills it, returns a series with a number, the dashboard's variables
list the job, the numbers are what happened, and the alert rules load and evaluate.
"""

from __future__ import annotations

import asyncio
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from kubetune_operator.handlers.runtime import RunOptions, run_operator
from kubetune_operator.kube import Connection
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.render.job import METRICS_PORT_NAME as METRICS_PORT
from kubetune_operator.settings import OperatorSettings
from kubetune_sandbox.emulator import ApiEmulator
from kubetune_trainer.contract import ErrorClass, Outcome, Progress, Stage

from ..deploy.chart import NAMESPACE, of_kind, render
from ..operator.cluster_actors import Actors, trainer_failed, trainer_succeeded, wait_for
from ..operator.conftest import EVENTS, FAST, PODS, RunningOperator
from ..operator.conftest import test_kopf_settings as fast_kopf_settings
from ..operator.journeys import pass_preflight, run_attempt, to_running, until_phase
from .dashboard import fill_in, label_values, load_dashboard, panel_queries, variable_queries
from .documented_config import discovered_pod_labels, documented_prometheus_config, with_discovery, write_targets
from .prometheus_server import PrometheusServer, free_port
from .promtool import ALERTS, ALERTS_FILE
from .trainer_run import HeldTrainerRun

# Grafana's values: `$__rate_interval` is at least four scrape intervals.
GRAFANA = {"__rate_interval": "15s", "__interval": "1s", "__range": "5m", "namespace": "ml", "finetunejob": "chat"}


async def _start_operator(cluster: ApiEmulator, *, port: int, trainer_port: int) -> RunningOperator:
    """The operator as `python -m kubetune_operator --metrics-port PORT` runs it; ready once /healthz says so."""
    metrics = OperatorMetrics()
    settings = OperatorSettings.model_validate({**FAST, "trainer_metrics_port": trainer_port})
    operator = RunningOperator(
        lambda: run_operator(
            settings=settings,
            connection=Connection(server=str(cluster.url).rstrip("/")),
            options=RunOptions(metrics_host="127.0.0.1", metrics_port=port),
            metrics=metrics,
            kopf_config=fast_kopf_settings(),
        ),
        metrics,
    )

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    deadline = asyncio.get_running_loop().time() + 20
    while not await healthy():
        assert not operator.done, f"the operator stopped: {operator.error!r}"
        assert asyncio.get_running_loop().time() < deadline, "the operator's /healthz never answered 200"
        await asyncio.sleep(0.05)
    return operator


async def _report_every_stage(cluster: ApiEmulator, actors: Actors, name: str) -> None:
    """Rank 0's reports, each stage announced by the operator before the next (so each finish is counted)."""
    done: list[Stage] = []
    for stage in Stage:
        progress = Progress(step=5, total_steps=10) if stage == Stage.TRAINING else None
        await actors.report(name, stage, done=list(done), progress=progress)
        await wait_for(partial(_announced, cluster, name, stage), what=f"stage {stage} announced")
        done.append(stage)


def _announced(cluster: ApiEmulator, name: str, stage: Stage) -> bool:
    return any(
        event["message"].startswith(f"stage {stage} started")
        for event in cluster.live_objects(EVENTS, "ml")
        if event["involvedObject"]["name"] == name
    )


async def _rest_of_lifecycle(cluster: ApiEmulator, actors: Actors, pod: str) -> None:
    """`chat` (running) fails once (Internal, retried) and then succeeds; `waiting` stays Queued."""
    await _report_every_stage(cluster, actors, "chat")
    await actors.terminate(
        pod, exit_code=1, message=trainer_failed(ErrorClass.INTERNAL, "UploadFailed", retryable=True)
    )
    (pod,) = await run_attempt(cluster, actors, "chat", 2)
    await _report_every_stage(cluster, actors, "chat")
    await actors.terminate(pod, exit_code=0, message=trainer_succeeded())
    await actors.job_condition("chat-a2", "Complete")
    await until_phase(cluster, "chat", "Succeeded")
    await pass_preflight(cluster, actors, "waiting")
    await until_phase(cluster, "waiting", "Queued")


def _operator_pod() -> dict[str, Any]:
    """The operator pod the chart's Deployment makes (what Kubernetes discovery would find)."""
    (deployment,) = of_kind(render({}), "Deployment")
    template = deployment["spec"]["template"]
    metadata = {**template["metadata"], "namespace": NAMESPACE, "name": "kubetune-5d8f7c9b6-q2x4z"}
    return {"metadata": metadata, "spec": template["spec"]}


def _served_port(pod: dict[str, Any]) -> int:
    (container,) = pod["spec"]["containers"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == METRICS_PORT]
    return int(port)


async def test_every_dashboard_panel_returns_data_while_the_operator_runs_a_job(
    cluster: ApiEmulator, actors: Actors, tmp_path: Path
) -> None:
    operator_port, trainer_port = free_port(), free_port()
    trainer = HeldTrainerRun(tmp_path / "trainer", port=trainer_port)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    # The documented config, discovering the chart's operator pod and (once it exists) the trainer pod.
    documented = documented_prometheus_config()
    jobs = {job["job_name"]: job for job in documented["scrape_configs"]}
    targets = {name: workdir / f"{name}.json" for name in jobs}
    operator_pod = _operator_pod()
    write_targets(
        targets["kubetune-operator"],
        f"127.0.0.1:{operator_port}",
        discovered_pod_labels(operator_pod, port_name=METRICS_PORT),
    )
    targets["kubetune-trainer"].write_text("[]", encoding="utf-8")  # no trainer pod yet
    shutil.copy(ALERTS_FILE, workdir / "kubetune-alerts.yaml")
    scrape_configs = [with_discovery(job, targets_file=targets[name]) for name, job in jobs.items()]

    operator: RunningOperator | None = None
    try:
        trainer.start()
        operator = await _start_operator(cluster, port=operator_port, trainer_port=trainer_port)
        async with PrometheusServer(scrape_configs, rule_files=documented["rule_files"], workdir=workdir) as prometheus:
            # Rates and quantiles need the zero before the change: start the jobs once the operator is scraped.
            await prometheus.until('up{job="kubetune-operator"} == 1')
            (pod_name,) = await to_running(cluster, actors, "chat", maxRetries=1)
            pod = cluster.live(PODS, "ml", pod_name)
            assert pod is not None
            write_targets(
                targets["kubetune-trainer"],
                f"127.0.0.1:{_served_port(pod)}",
                discovered_pod_labels(pod, port_name=METRICS_PORT),
            )
            await _rest_of_lifecycle(cluster, actors, pod_name)
            await wait_for(lambda: trainer.saving, timeout=60, what="the trainer run to reach Saving")

            dashboard = load_dashboard()
            for panel in panel_queries(dashboard):
                await prometheus.until(fill_in(panel.expr, GRAFANA), what=f"panel {panel.panel!r} ({panel.ref})")

            for name, query in variable_queries(dashboard).items():
                selector, label = label_values(query)
                values = await prometheus.api(f"label/{label}/values", **{"match[]": fill_in(selector, GRAFANA)})
                assert GRAFANA[name] in values, f"variable {name} offers {values}"

            # What the panels show is what happened: each of these holds, polled until scraped.
            assert trainer.recorded.progresses, "the real run reported no step"
            for holds in (
                'max(kubetune_jobs{phase="Succeeded"}) == 1',
                'max(kubetune_jobs{phase="Queued"}) == 1',
                'sum(kubetune_job_failures_total{error_class="Internal"}) == 1',
                'sum(kubetune_job_retries_total{reason="UploadFailed"}) == 1',
                'sum(kubetune_job_stage_duration_seconds_count{stage="Training"}) == 2',
                "sum(kubetune_apply_to_pods_seconds_count) == 2",
                "max(kubetune_oldest_queued_job_age_seconds) > 0",
                f"kubetune_trainer_step == {trainer.recorded.progresses[-1].step}",
                'kubetune_trainer_stage{stage="Saving"} == 1',
                "time() - kubetune_trainer_last_step_timestamp_seconds < 60",
            ):
                await prometheus.until(holds)

            assert await _rules_health(prometheus) == dict.fromkeys(ALERTS, "ok")
    finally:
        if operator is not None:
            await operator.stop()
        result = trainer.finish()
    assert result.outcome is Outcome.SUCCEEDED, result.error


async def _rules_health(prometheus: PrometheusServer, timeout: float = 10.0) -> dict[str, str]:
    """Each alert rule's health once every rule has been evaluated ("unknown" before)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        groups = (await prometheus.api("rules"))["groups"]
        health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        if "unknown" not in health.values() or asyncio.get_running_loop().time() > deadline:
            return health
        await asyncio.sleep(0.2)
