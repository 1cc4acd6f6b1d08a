"""Operator settings come from KUBETUNE_* variables in one place; a bad value names its variable."""

from __future__ import annotations

import pytest

from kubetune_operator.settings import OperatorSettings


def test_defaults_match_the_documented_policy() -> None:
    settings = OperatorSettings.from_env({})
    assert settings.retry_backoff_seconds == 30
    assert settings.image_pull_grace_seconds == 300
    assert settings.preflight is True
    assert settings.namespaces == ()
    assert settings.termination_grace_seconds > settings.checkpoint_grace_seconds


def test_values_are_read_from_the_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "KUBETUNE_TRAINER_IMAGE": "registry.example/trainer:2",
            "KUBETUNE_NAMESPACES": "ml,research",
            "KUBETUNE_RETRY_BACKOFF_SECONDS": "5",
            "KUBETUNE_PREFLIGHT": "false",
            "KUBETUNE_CLI_COLOR": "never",  # another component's variable: not a setting
            "HOME": "/root",
        }
    )
    assert settings.trainer_image == "registry.example/trainer:2"
    assert settings.namespaces == ("ml", "research")
    assert settings.retry_backoff_seconds == 5
    assert settings.preflight is False


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="KUBETUNE_IMAGE_PULL_GRACE_SECONDS"):
        OperatorSettings.from_env({"KUBETUNE_IMAGE_PULL_GRACE_SECONDS": "soon"})


def test_a_renamed_setting_is_still_read_under_its_old_name_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    old = OperatorSettings.from_env({"KUBETUNE_PREFLIGHT_RESULT_GRACE_SECONDS": "45"})
    assert old.result_grace_seconds == 45
    assert "KUBETUNE_PREFLIGHT_RESULT_GRACE_SECONDS is deprecated: set KUBETUNE_RESULT_GRACE_SECONDS" in caplog.text
    both = {"KUBETUNE_PREFLIGHT_RESULT_GRACE_SECONDS": "45", "KUBETUNE_RESULT_GRACE_SECONDS": "10"}
    assert OperatorSettings.from_env(both).result_grace_seconds == 10
