"""The chart's pod-addition allow-lists reach the operator, which holds jobs' spec.pod to them."""

from __future__ import annotations

from kubetune_operator.settings import OperatorSettings

from .chart import operator_container, render, validation_errors


def test_the_allow_lists_are_read_by_the_operator() -> None:
    values = {
        "settings": {
            "podEnvAllowed": "NCCL_*,DATASET_TOKEN",
            "podVolumeClaimsAllowed": "datasets-*",
            "podTolerationsAllowed": True,
            "podAffinityAllowed": True,
        }
    }
    env = {e["name"]: e["value"] for e in operator_container(render(values))["env"]}
    settings = OperatorSettings.from_env(env)
    assert settings.pod_env_allowed == ("NCCL_*", "DATASET_TOKEN")
    assert settings.pod_volume_claims_allowed == ("datasets-*",)
    assert (settings.pod_tolerations_allowed, settings.pod_affinity_allowed) == (True, True)


def test_by_default_a_job_may_add_nothing() -> None:
    env = {e["name"]: e["value"] for e in operator_container(render({}))["env"]}
    settings = OperatorSettings.from_env(env)
    assert settings.pod_env_allowed == ()
    assert settings.pod_volume_claims_allowed == ()
    assert (settings.pod_tolerations_allowed, settings.pod_affinity_allowed) == (False, False)


def test_values_that_are_not_lists_of_names_are_refused_by_the_chart() -> None:
    assert "podEnvAllowed" in validation_errors({"settings": {"podEnvAllowed": "NCCL DEBUG"}})
    assert "podVolumeClaimsAllowed" in validation_errors({"settings": {"podVolumeClaimsAllowed": "Data/Sets"}})
    assert "podTolerationsAllowed" in validation_errors({"settings": {"podTolerationsAllowed": "yes"}})
