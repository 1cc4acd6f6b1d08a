"""Trainer fixtures: tiny models in a real local HF cache, an offline environment, a loopback hub.

The Hub is unreachable here. huggingface_hub reads HF_HUB_OFFLINE, HF_HOME and HF_ENDPOINT
once, at import, so in-process code gets them through the `environ` it is handed (our code
passes cache_dir, local_files_only and endpoint explicitly), and subprocesses get
`offline_env`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetune_operator.resolve.catalog import Catalog
from kubetune_operator.resolve.selection import expectations_of
from kubetune_trainer.contract import TemplateExpectations
from kubetune_trainer.hf_cache import publish_folder
from kubetune_trainer.tiny_model import ARCHES, TinyModel, write_tiny_adapter, write_tiny_model

from .mock_hub import MockHub, serve_mock_hub
from .refused_models import REFUSED, build_case
from .s3_checkpoints import empty_checkpoint_bucket

TINY_REPOS = {arch: f"tiny-org/tiny-{arch}" for arch in ARCHES}
TINY_ADAPTER_REPO = "tiny-org/tiny-llama-lora"


@pytest.fixture(scope="session")
def tiny_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF_HOME whose hub cache holds tiny-org/tiny-{llama,qwen2,mistral} and a LoRA adapter of the llama.

    Shared by the whole session: treat it as read-only, or copy it (`private_hf_home`).
    """
    hf_home = tmp_path_factory.mktemp("hf-home")
    base = write_tiny_model(arch="llama", repo_id=TINY_REPOS["llama"], hf_home=hf_home, revisions=("main", "v1.0"))
    for arch in ARCHES[1:]:
        write_tiny_model(arch=arch, repo_id=TINY_REPOS[arch], hf_home=hf_home)
    write_tiny_adapter(base=base, repo_id=TINY_ADAPTER_REPO, hf_home=hf_home)
    return hf_home


def _published(hf_home: Path, repo_id: str) -> TinyModel:
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    sha = (repo / "refs" / "main").read_text(encoding="utf-8")
    return TinyModel(repo_id=repo_id, revision_sha=sha, snapshot_path=repo / "snapshots" / sha)


@pytest.fixture(scope="session")
def tiny_models(tiny_hf_home: Path) -> dict[str, TinyModel]:
    """arch -> the published tiny model, for parametrized tests."""
    return {arch: _published(tiny_hf_home, repo_id) for arch, repo_id in TINY_REPOS.items()}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models: dict[str, TinyModel]) -> TinyModel:
    return tiny_models["llama"]


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_models: dict[str, TinyModel]) -> TinyModel:
    return tiny_models["qwen2"]


@pytest.fixture(scope="session")
def tiny_mistral(tiny_models: dict[str, TinyModel]) -> TinyModel:
    return tiny_models["mistral"]


@pytest.fixture(scope="session")
def tiny_adapter(tiny_hf_home: Path) -> TinyModel:
    """tiny-org/tiny-llama-lora: adapter_config.json naming tiny-org/tiny-llama, random A and B."""
    return _published(tiny_hf_home, TINY_ADAPTER_REPO)


@pytest.fixture
def private_hf_home(tiny_hf_home: Path, tmp_path: Path) -> Path:
    """A writable copy of `tiny_hf_home` for tests that add repos or download into the cache."""
    copy = tmp_path / "hf-home"
    shutil.copytree(tiny_hf_home, copy, symlinks=True)
    return copy


def _hub_environ(hf_home: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    environ.update(
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    return environ


@pytest.fixture
def offline_env(tiny_hf_home: Path) -> dict[str, str]:
    """The environment for a subprocess (or an injected `environ`) that must never reach a hub."""
    environ = _hub_environ(tiny_hf_home)
    environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return environ


@pytest.fixture
def mock_hub() -> Iterator[MockHub]:
    """A loopback hub with no repos yet: `mock_hub.add(repo_id, folder, sha=...)`."""
    with serve_mock_hub() as hub:
        yield hub


@pytest.fixture
def s3_bucket() -> Iterator[tuple[dict[str, str], Any, str]]:
    """A moto S3 server on loopback with an empty bucket: (AWS environ, boto3 client, bucket name)."""
    with empty_checkpoint_bucket() as bucket:
        yield bucket


@pytest.fixture
def online_env(mock_hub: MockHub, tmp_path: Path) -> dict[str, str]:
    """An environment pointing at the loopback hub, with an empty cache of its own."""
    environ = _hub_environ(tmp_path / "online-hf-home")
    environ["HF_ENDPOINT"] = mock_hub.endpoint
    return environ


@dataclass(frozen=True)
class RefusedRepos:
    """Every case of `refused_models.REFUSED`: source folders (for a mock hub) and an HF_HOME holding them."""

    hf_home: Path
    sources: dict[str, Path]
    shas: dict[str, str]


@pytest.fixture(scope="session")
def refused_repos(tmp_path_factory: pytest.TempPathFactory, tiny_llama: TinyModel) -> RefusedRepos:
    root = tmp_path_factory.mktemp("refused")
    sources: dict[str, Path] = {}
    shas: dict[str, str] = {}
    for case in REFUSED:
        sources[case.name] = build_case(case, tiny_snapshot=tiny_llama.snapshot_path, into=root / "sources")
        shas[case.name] = publish_folder(
            sources[case.name], repo_id=case.repo, hub_cache=root / "hf" / "hub"
        ).revision_sha
    return RefusedRepos(hf_home=root / "hf", sources=sources, shas=shas)


@pytest.fixture(scope="session")
def llama_template(catalog: Catalog) -> TemplateExpectations:
    """What the llama-2-7b-chat template expects (Together's togethercomputer/llama-2-7b-chat)."""
    template = catalog.find("togethercomputer/llama-2-7b-chat")
    assert template is not None
    return expectations_of(template)
