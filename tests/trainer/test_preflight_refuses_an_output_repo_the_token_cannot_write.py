"""The preflight asks the hub whether the job's token may write its hf:// output repo, before any GPU is held.

A token the hub refuses (401/403), a read token, or a namespace the token's user cannot write is
InvalidInput naming the token's field and the output field, never the token; the model and data
are not even looked at. A hub that cannot be reached stays an outage (Internal, retried); a token
that may write passes on to the model check; a pvc:// output asks the hub nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.contract import ErrorClass, ModelSource, Outcome, OutputTarget, Result, TrainerConfig
from kubetune_trainer.preflight import run_preflight

from .local_runs import trainer_config
from .mock_hub import MockHub

SENTINEL = "hf_SENTINELwriteCheck4711"


def _identity(*, role: str, name: str = "alice", orgs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A whoami-v2 answer as huggingface.co gives it, for a classic token of `role`."""
    return {
        "type": "user",
        "name": name,
        "orgs": orgs or [],
        "auth": {"type": "access_token", "accessToken": {"displayName": "ci", "role": role}},
    }


def _config(tmp_path: Path, *, output: str) -> TrainerConfig:
    base = trainer_config(tmp_path)
    return TrainerConfig.parse(
        {
            **base.to_wire(),
            "model": ModelSource.parse({**base.model.to_wire(), "tokenEnv": "HF_TOKEN"}).to_wire(),
            "output": OutputTarget(uri=output, model_name="out").to_wire(),
        }
    )


def _preflight(tmp_path: Path, hub: MockHub, environ: dict[str, str], *, output: str = "hf://alice/out") -> Result:
    return run_preflight(_config(tmp_path, output=output), environ={**environ, "HF_TOKEN": f"{SENTINEL}\n"})


def _refusal(result: Result) -> str:
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.error_class, result.error.reason, result.error.retryable) == (
        ErrorClass.INVALID_INPUT,
        "OutputAccessDenied",
        False,
    )
    assert result.exit_code == 2
    shown = result.to_termination_message()
    assert SENTINEL not in shown
    assert "spec.hfTokenSecretRef" in shown
    assert "spec.output.uri" in shown
    return f"{result.error.message} {result.error.hint}"


@pytest.mark.parametrize("status", [401, 403])
def test_a_token_the_hub_refuses_fails_the_preflight_before_the_model_is_read(
    status: int, tmp_path: Path, mock_hub: MockHub, online_env: dict[str, str]
) -> None:
    if status == 403:
        mock_hub.identities[SENTINEL] = 403
    # 401: the hub knows no such token (mock_hub.identities is empty).

    shown = _refusal(_preflight(tmp_path, mock_hub, online_env))

    assert f"HTTP {status}" in shown
    assert mock_hub.requests == ["GET /api/whoami-v2"], "the model and data were looked at after the refusal"


def test_a_read_token_cannot_upload(tmp_path: Path, mock_hub: MockHub, online_env: dict[str, str]) -> None:
    mock_hub.identities[SENTINEL] = _identity(role="read")

    assert "read token" in _refusal(_preflight(tmp_path, mock_hub, online_env))


def test_a_namespace_the_tokens_user_cannot_write_is_refused(
    tmp_path: Path, mock_hub: MockHub, online_env: dict[str, str]
) -> None:
    mock_hub.identities[SENTINEL] = _identity(role="write", orgs=[{"name": "readers", "roleInOrg": "read"}])

    assert "not a member" in _refusal(_preflight(tmp_path, mock_hub, online_env, output="hf://someone-else/out"))
    assert "only read" in _refusal(_preflight(tmp_path, mock_hub, online_env, output="hf://readers/out"))


def test_a_token_that_may_write_passes_on_to_the_model_check(
    tmp_path: Path, mock_hub: MockHub, online_env: dict[str, str]
) -> None:
    mock_hub.identities[SENTINEL] = _identity(role="write", orgs=[{"name": "acme", "roleInOrg": "write"}])

    for output in ("hf://alice/out", "hf://acme/out"):
        result = _preflight(tmp_path, mock_hub, online_env, output=output)
        # The config's model is not on this hub: the preflight went past the output check to the model.
        assert result.error is not None
        assert result.error.reason == "ModelRepoNotFound", result.error


def test_an_unreachable_hub_is_an_outage_and_retried(
    tmp_path: Path, mock_hub: MockHub, online_env: dict[str, str]
) -> None:
    mock_hub.fail_with = 503

    result = _preflight(tmp_path, mock_hub, online_env)

    assert result.error is not None
    assert (result.error.error_class, result.error.reason, result.error.retryable) == (
        ErrorClass.INTERNAL,
        "HubUnavailable",
        True,
    )
    assert SENTINEL not in result.to_termination_message()


def test_a_pvc_output_asks_the_hub_nothing(tmp_path: Path, mock_hub: MockHub, online_env: dict[str, str]) -> None:
    _preflight(tmp_path, mock_hub, online_env, output="pvc://models/out")

    assert "GET /api/whoami-v2" not in mock_hub.requests
