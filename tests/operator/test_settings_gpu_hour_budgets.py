"""KUBETUNE_GPU_HOUR_BUDGETS: namespace=hours pairs, `*` for the rest; a bad value names the variable and the fix."""

from __future__ import annotations

import pytest

from kubetune_operator.settings import OperatorSettings


def test_budgets_per_namespace_with_a_default_for_the_rest() -> None:
    settings = OperatorSettings.from_env({"KUBETUNE_GPU_HOUR_BUDGETS": "team-a=500, research=0,*=40"})
    assert settings.gpu_hour_budget("team-a") == 500.0
    assert settings.gpu_hour_budget("research") == 0.0, "0: the namespace may start no job"
    assert settings.gpu_hour_budget("anyone-else") == 40.0


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("team-a=lots", "number"),
        ("team-a", "is not key=value"),
        ("Team_A=5", "is not a namespace name"),
        ("team-a=-1", "0 or more"),
    ],
)
def test_a_bad_budget_names_the_variable(raw: str, said: str) -> None:
    with pytest.raises(ValueError, match="KUBETUNE_GPU_HOUR_BUDGETS") as refused:
        OperatorSettings.from_env({"KUBETUNE_GPU_HOUR_BUDGETS": raw})
    assert said in str(refused.value)
    assert "KUBETUNE_GPU_HOUR_BUDGETS_" not in str(refused.value), "the variable, not a key inside it"
