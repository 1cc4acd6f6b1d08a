"""A Secret the trainer pod names is missing: the kubelet's waiting reason and words, which the operator reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubetune_operator.observe.pod_state import PodView
from kubetune_sandbox.layout import SandboxLayout
from kubetune_sandbox.pod_inputs import PodPlanError
from kubetune_trainer.contract import ErrorClass

from .rendered_pods import SINGLE_NODE, plan, pod_of, rendered

LAYOUT = SandboxLayout(Path("/sandbox"))


def _waiting_pod(error: PodPlanError) -> dict[str, object]:
    objects = rendered(SINGLE_NODE)
    pod = pod_of(objects["Job"], index=0)
    waiting = {"reason": error.reason, "message": error.message}
    pod["status"] = {"phase": "Pending", "containerStatuses": [{"name": "trainer", "state": {"waiting": waiting}}]}
    return pod


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({}, 'secret "hf-token" not found'),
        ({"hf-token": {"metadata": {"name": "hf-token"}, "data": {}}}, "couldn't find key token in Secret ml/hf-token"),
    ],
)
def test_a_missing_secret_or_key_stops_the_container_as_the_kubelet_does(
    secrets: dict[str, object], message: str
) -> None:
    objects = rendered(SINGLE_NODE)
    with pytest.raises(PodPlanError) as refused:
        plan(pod_of(objects["Job"], index=0), objects, layout=LAYOUT, secrets=secrets)
    assert refused.value.reason == "CreateContainerConfigError"
    assert refused.value.message == message
    # The operator reads those words as the user's mistake, naming the Secret and the key.
    view = PodView.of(_waiting_pod(refused.value), now=datetime.now(tz=UTC), image_pull_grace=300)
    assert view.error is not None
    assert view.error.error_class == ErrorClass.INVALID_INPUT
    assert "Secret hf-token" in view.error.message
    assert "env HF_TOKEN from Secret hf-token key token" in view.error.message


def test_a_missing_configmap_volume_keeps_the_container_creating() -> None:
    objects = rendered(SINGLE_NODE)
    objects["ConfigMap"] = {**objects["ConfigMap"], "metadata": {"name": "another"}}
    with pytest.raises(PodPlanError) as refused:
        plan(pod_of(objects["Job"], index=0), objects, layout=LAYOUT)
    assert refused.value.reason == "ContainerCreating"
    assert refused.value.message == (
        'MountVolume.SetUp failed for volume "config" : configmap "support-bot-a1" not found'
    )
