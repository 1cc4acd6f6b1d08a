"""Every pod the chart runs meets the restricted Pod Security Standard."""

from __future__ import annotations

import pytest

from ..operator.pod_security import pod_spec_of, restricted_violations
from .chart import VARIANTS, render

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_pod_spec_is_restricted(variant: str) -> None:
    workloads = [r for r in render(VARIANTS[variant]) if r.kind in WORKLOADS]
    assert workloads
    for workload in workloads:
        spec = pod_spec_of(workload.obj)
        assert restricted_violations(spec) == [], f"{workload.kind}/{workload.name}"
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
