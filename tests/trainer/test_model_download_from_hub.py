"""Downloading from a hub (a loopback one): resolved commit recorded, no pickle fetched, errors translated.

The mock hub answers as huggingface.co does (status plus X-Error-Code), so these are the real
RepositoryNotFoundError, RevisionNotFoundError and GatedRepoError coming out of huggingface_hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubetune_trainer.contract import ErrorClass, ModelSource, TemplateExpectations
from kubetune_trainer.errors import InfrastructureFailure, InvalidInput, TrainerError
from kubetune_trainer.hub import HubSettings, download_model
from kubetune_trainer.tiny_model import TinyModel

from .conftest import RefusedRepos
from .mock_hub import MockHub

SECRET = "hf_very_secret_token_value"


@pytest.fixture
def hub_repo(mock_hub: MockHub, tiny_llama: TinyModel, tmp_path: Path) -> str:
    """tiny-llama on the hub with extra copies of its weights as a pickle and as consolidated.safetensors."""
    folder = tmp_path / "repo"
    shutil.copytree(tiny_llama.snapshot_path, folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (folder / "training_args.pt").write_bytes(b"\x80\x04pickle")
    shutil.copyfile(folder / "model.safetensors", folder / "consolidated.safetensors")
    mock_hub.add("org/llama", folder, sha=tiny_llama.revision_sha, revisions=("main", "v1"))
    mock_hub.add("org/gated", folder, sha=tiny_llama.revision_sha, gated=True)
    mock_hub.add("org/private", folder, sha=tiny_llama.revision_sha, private=True)
    return "org/llama"


def test_download_records_the_commit_and_fetches_no_pickle(
    hub_repo: str, mock_hub: MockHub, online_env: dict[str, str], llama_template: TemplateExpectations, tmp_path: Path
) -> None:
    source = ModelSource(repo=hub_repo, revision="v1", template=llama_template)
    model = download_model(source, cache_dir=tmp_path / "cache", environ=online_env)

    assert model.revision_sha == mock_hub.repos[hub_repo].refs["v1"]
    assert model.snapshot_path.name == model.revision_sha
    assert "model.safetensors" in model.files
    assert "tokenizer.json" in model.files
    assert "chat_template.jinja" in model.files
    fetched = mock_hub.fetched_files()
    assert fetched[0] == "config.json", "config.json is read before any weight moves"
    assert not [f for f in fetched if f.endswith((".bin", ".pt"))]
    assert "consolidated.safetensors" not in fetched, "only the weights transformers loads"
    assert model.facts.parameters == 172_352
    assert model.facts.revision_sha == model.revision_sha


def test_a_bin_only_repo_is_refused_after_reading_only_config(
    refused_repos: RefusedRepos,
    mock_hub: MockHub,
    online_env: dict[str, str],
    llama_template: TemplateExpectations,
    tmp_path: Path,
) -> None:
    mock_hub.add("org/bin-only", refused_repos.sources["bin-only"], sha=refused_repos.shas["bin-only"])
    source = ModelSource(repo="org/bin-only", template=llama_template)
    with pytest.raises(InvalidInput) as refused:
        download_model(source, cache_dir=tmp_path / "cache", environ=online_env)
    assert refused.value.reason == "NoSafetensorsWeights"
    assert mock_hub.fetched_files() == ["config.json"]
    assert not list((tmp_path / "cache").rglob("*.bin"))


@pytest.mark.parametrize(
    ("repo", "revision", "reason", "field"),
    [
        ("org/absent", "main", "ModelRepoNotFound", "spec.fromHfModel"),
        ("org/private", "main", "ModelRepoNotFound", "spec.fromHfModel"),
        ("org/llama", "no-such-branch", "RevisionNotFound", "spec.hfModelRevision"),
        ("org/gated", "main", "ModelAccessDenied", "spec.hfTokenSecretRef"),
    ],
)
def test_hub_errors_become_invalid_input_naming_the_field(
    hub_repo: str,
    online_env: dict[str, str],
    llama_template: TemplateExpectations,
    tmp_path: Path,
    *,
    repo: str,
    revision: str,
    reason: str,
    field: str,
) -> None:
    source = ModelSource(repo=repo, revision=revision, template=llama_template)
    with pytest.raises(InvalidInput) as refused:
        download_model(source, cache_dir=tmp_path / "cache", environ=online_env)
    error = refused.value.to_job_error()
    assert (error.error_class, error.reason, refused.value.field) == (ErrorClass.INVALID_INPUT, reason, field)
    assert field in (error.hint or "") + error.message
    assert not error.retryable


def test_a_token_from_the_named_variable_opens_gated_and_private_repos_and_never_shows(
    hub_repo: str, online_env: dict[str, str], llama_template: TemplateExpectations, tmp_path: Path
) -> None:
    environ = {**online_env, "HF_TOKEN_FROM_SECRET": SECRET}
    for repo in ("org/gated", "org/private"):
        source = ModelSource(repo=repo, token_env="HF_TOKEN_FROM_SECRET", template=llama_template)
        assert download_model(source, cache_dir=tmp_path / "cache", environ=environ).files
    settings = HubSettings.from_env(environ, token_env="HF_TOKEN_FROM_SECRET")
    assert SECRET not in repr(settings)

    wrong = ModelSource(repo="org/gated", token_env="UNSET_VARIABLE", template=llama_template)
    with pytest.raises(InvalidInput) as denied:
        download_model(wrong, cache_dir=tmp_path / "other-cache", environ=environ)
    assert "UNSET_VARIABLE" in denied.value.message
    assert SECRET not in denied.value.message + (denied.value.hint or "")


def test_a_hub_outage_is_internal_and_retryable(
    hub_repo: str, mock_hub: MockHub, online_env: dict[str, str], llama_template: TemplateExpectations, tmp_path: Path
) -> None:
    mock_hub.fail_with = 503
    with pytest.raises(InfrastructureFailure) as failed:
        download_model(ModelSource(repo=hub_repo, template=llama_template), cache_dir=tmp_path, environ=online_env)
    error = failed.value.to_job_error()
    assert (error.error_class, error.reason, error.retryable) == (ErrorClass.INTERNAL, "HubUnavailable", True)
    assert "503" in error.message


def test_an_unreachable_hub_is_internal_and_retryable(
    online_env: dict[str, str], llama_template: TemplateExpectations, tmp_path: Path
) -> None:
    environ = {**online_env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # discard port: connection refused
    with pytest.raises(TrainerError) as failed:
        download_model(ModelSource(repo="org/llama", template=llama_template), cache_dir=tmp_path, environ=environ)
    assert isinstance(failed.value, InfrastructureFailure)
    assert failed.value.retryable
