"""kubetune_gpu_hours_total{namespace} grows by the GPU time a job's status records, once, per namespace only."""

from __future__ import annotations

import math

from kubetune_operator.api.status import Phase
from kubetune_operator.controller.bookkeeping import record_step
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.observe.observation import Observation, RunState

from .machine_harness import Machine, attempt_seen, succeeded_result

POD_SECONDS = {"ml": 3540.0, "research": 900.0}


def _tick(machine: Machine, metrics: OperatorMetrics, key: tuple[str, str], seen: Observation, *, at: float) -> None:
    old = machine.status
    step = machine.tick(seen, at=at)
    record_step(metrics, key, old=old, step=step)


def _hours(metrics: OperatorMetrics, namespace: str) -> float | None:
    return metrics.registry.get_sample_value("kubetune_gpu_hours_total", {"namespace": namespace})


def test_gpu_hours_follow_status_gpu_seconds_once_and_only_by_namespace() -> None:
    metrics = OperatorMetrics()
    machines = {"ml": Machine(), "research": Machine()}
    for namespace, machine in machines.items():
        machine.start_running()
        key = (namespace, "support-bot")
        _tick(machine, metrics, key, attempt_seen(1, RunState.RUNNING), at=60)
        _tick(machine, metrics, key, attempt_seen(1, RunState.RUNNING), at=60)  # nothing new: nothing counted
        done = attempt_seen(1, RunState.SUCCEEDED, result=succeeded_result(), pod_seconds=POD_SECONDS[namespace])
        _tick(machine, metrics, key, done, at=3600)
        _tick(machine, metrics, key, done, at=7200)  # a finished job holds no more GPU time
        assert machine.status.phase == Phase.SUCCEEDED

    for namespace, machine in machines.items():
        seconds = machine.status.gpu_seconds
        assert seconds is not None
        assert seconds >= POD_SECONDS[namespace], "GPU time is pod time x GPUs per pod"
        hours = _hours(metrics, namespace)
        assert hours is not None
        assert math.isclose(hours, seconds / 3600)
    families = [f for f in metrics.registry.collect() if f.name == "kubetune_gpu_hours"]
    labels = {tuple(sorted(s.labels)) for f in families for s in f.samples}
    assert labels == {("namespace",)}, "no job name in the series"
