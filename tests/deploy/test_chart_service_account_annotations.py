"""settings.serviceAccountAnnotations in the chart reaches the operator as annotations it puts on pods' accounts."""

from __future__ import annotations

from kubetune_operator.settings import OperatorSettings

from .chart import operator_container, render, validation_errors

IRSA = "eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/kubetune-trainer"


def test_the_chart_value_is_read_by_the_operator_as_annotations() -> None:
    env = {
        e["name"]: e["value"]
        for e in operator_container(render({"settings": {"serviceAccountAnnotations": IRSA}}))["env"]
    }
    settings = OperatorSettings.from_env(env)
    assert settings.service_account_annotations == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/kubetune-trainer"
    }


def test_a_value_that_is_not_key_value_is_refused_by_the_chart() -> None:
    errors = validation_errors({"settings": {"serviceAccountAnnotations": "eks.amazonaws.com/role-arn"}})
    assert "serviceAccountAnnotations" in errors
