"""An unreachable hub with the model already cached: the run goes on from the cache, and says so.

This is what `snapshot_download` itself does, and what a user expects on a laptop without network
or in a cluster whose cache volume already holds the model during a hub outage. Nothing cached:
the outage stays an Internal, retryable failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.contract import ModelSource, TemplateExpectations
from kubetune_trainer.errors import InfrastructureFailure
from kubetune_trainer.hub import download_model
from kubetune_trainer.tiny_model import TinyModel

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once


def test_a_cached_model_is_used_with_a_warning_when_the_hub_cannot_be_reached(
    tiny_llama: TinyModel, private_hf_home: Path, online_env: dict[str, str], llama_template: TemplateExpectations
) -> None:
    environ = {**online_env, "HF_ENDPOINT": UNREACHABLE, "HF_HOME": str(private_hf_home)}
    downloaded = download_model(
        ModelSource(repo=tiny_llama.repo_id, template=llama_template),
        cache_dir=private_hf_home / "hub",
        environ=environ,
    )
    assert downloaded.revision_sha == tiny_llama.revision_sha
    assert (downloaded.snapshot_path / "model.safetensors").is_file()
    (note,) = [w for w in downloaded.warnings if w.reason == "ModelFromLocalCache"]
    assert tiny_llama.revision_sha[:12] in note.message


def test_with_nothing_cached_an_unreachable_hub_stays_a_retryable_failure(
    online_env: dict[str, str], llama_template: TemplateExpectations, tmp_path: Path
) -> None:
    environ = {**online_env, "HF_ENDPOINT": UNREACHABLE}
    with pytest.raises(InfrastructureFailure) as failed:
        download_model(ModelSource(repo="org/absent", template=llama_template), cache_dir=tmp_path, environ=environ)
    assert (failed.value.reason, failed.value.retryable) == ("HubUnavailable", True)
