"""Every family the catalog names trains from a manifest to a saved model that loads: tiny random Gemma 3 (text),
Phi-3 and Qwen3, full fine-tuning and LoRA (merged), with `kubetune run --local` (Llama, Qwen2 and Mistral run in
test_run_local_fine_tunes_tiny_models.py, Mixtral and Gemma 2 in their own tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.contract import Outcome
from kubetune_trainer.tiny_model import write_tiny_model

from .local_runs import assert_saved_model_loads, train_tiny_chat

FAMILIES = ("gemma3_text", "phi3", "qwen3")


@pytest.fixture(scope="module")
def families_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("families-hf-home")
    for arch in FAMILIES:
        write_tiny_model(arch=arch, repo_id=f"tiny-org/tiny-{arch.replace('_', '-')}", hf_home=home)
    return home


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("arch", FAMILIES)
def test_a_tiny_model_of_the_family_trains_and_saves_a_model_that_loads(
    arch: str, lora: bool, families_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    repo = f"tiny-org/tiny-{arch.replace('_', '-')}"
    run = train_tiny_chat(
        repo, tmp_path, hf_home=families_hf_home, environ=offline_env, lora=lora, name=f"tiny-{arch.replace('_', '-')}"
    )
    assert run.returncode == 0, run.output
    assert run.result.outcome is Outcome.SUCCEEDED
    assert run.result.model is not None
    assert run.result.model.model_type == arch
    assert_saved_model_loads(run, arch)
