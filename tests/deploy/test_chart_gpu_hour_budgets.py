"""settings.gpuHourBudgets in the chart reaches the operator as its per-namespace GPU-hour budgets."""

from __future__ import annotations

from kubetune_operator.settings import OperatorSettings

from .chart import operator_container, render, validation_errors


def test_the_chart_value_is_read_by_the_operator_as_budgets() -> None:
    values = {"settings": {"gpuHourBudgets": "team-a=500,*=12.5", "budgetRecheckSeconds": 30}}
    env = {e["name"]: e["value"] for e in operator_container(render(values))["env"]}
    settings = OperatorSettings.from_env(env)
    assert settings.gpu_hour_budgets == {"team-a": 500.0, "*": 12.5}
    assert (settings.gpu_hour_budget("team-a"), settings.gpu_hour_budget("other")) == (500.0, 12.5)
    assert settings.budget_recheck_seconds == 30.0


def test_no_value_means_no_budget() -> None:
    env = {e["name"]: e["value"] for e in operator_container(render({}))["env"]}
    assert "KUBETUNE_GPU_HOUR_BUDGETS" not in env
    assert OperatorSettings.from_env(env).gpu_hour_budget("team-a") is None


def test_a_budget_that_is_not_namespace_hours_is_refused_by_the_chart() -> None:
    for bad in ("team-a", "team-a=lots", "Team_A=5"):
        assert "gpuHourBudgets" in validation_errors({"settings": {"gpuHourBudgets": bad}}), bad
