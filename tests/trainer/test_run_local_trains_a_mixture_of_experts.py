"""A mixture of experts from manifest to saved model: a tiny Mixtral (4 experts, 2 a token) trained by
`kubetune run --local` on the catalog's Mixtral template, full and LoRA (whose all-linear adapts the stacked
experts), planned per routed token; LoRA dropout, which the stacked experts cannot take, refused by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from kubetune_trainer.contract import ErrorClass, Outcome
from kubetune_trainer.memory_model import ModelShape, TrainingSetup, activation_bytes_per_token
from kubetune_trainer.tiny_model import TinyModel, write_tiny_model

from .local_runs import LocalRun, chat_spec, kubetune_run, write_chat_data, write_manifest

TINY_MIXTRAL = "tiny-org/tiny-mixtral"


@pytest.fixture(scope="module")
def moe_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of its own: the shared tiny models' cache is never written to."""
    return tmp_path_factory.mktemp("moe-hf-home")


@pytest.fixture(scope="module")
def tiny_mixtral(moe_hf_home: Path) -> TinyModel:
    return write_tiny_model(arch="mixtral", repo_id=TINY_MIXTRAL, hf_home=moe_hf_home)


def _run(tmp_path: Path, hf_home: Path, environ: dict[str, str], *, name: str, lora: dict[str, Any]) -> LocalRun:
    data = write_chat_data(tmp_path / "data", train=32, validation=8)
    spec = chat_spec(TINY_MIXTRAL, data, lora=lora)
    spec["hyperparameters"] |= {"nEpochs": 1, "batchSize": 16}  # the Mixtral template's least batch
    manifest = write_manifest(tmp_path / "job.yaml", name=name, spec=spec)
    return kubetune_run(manifest, workdir=tmp_path / "work", hf_home=hf_home, environ=environ)


def _experts(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors |= {name: t for name, t in load_file(file).items() if ".mlp.experts." in name}
    return tensors


def test_a_full_fine_tune_of_a_mixture_of_experts_is_planned_per_routed_token_and_saved(
    tiny_mixtral: TinyModel, moe_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    run = _run(tmp_path, moe_hf_home, offline_env, name="tiny-moe-full", lora={"enabled": False})
    assert run.returncode == 0, run.output
    result = run.result
    assert result.outcome is Outcome.SUCCEEDED
    assert result.model is not None
    assert result.model.shape is not None
    assert (result.model.shape.num_experts, result.model.shape.active_experts) == (4, 2)
    # The trainer planned with the experts a token is routed to, not a dense MLP (the template checkpoints).
    shape = ModelShape.from_facts(result.model.shape, parameters=result.model.parameters)
    setup = TrainingSetup.for_run(shape, device="cpu", lean_mlp=False, gradient_checkpointing=True)
    dense = ModelShape(**{**vars(shape), "num_experts": 0, "active_experts": 0})
    assert result.memory_plan is not None
    assert result.memory_plan.activation_bytes_per_token == activation_bytes_per_token(shape, setup)
    assert result.memory_plan.activation_bytes_per_token > activation_bytes_per_token(dense, setup)
    saved = _experts(tmp_path / "work" / "output" / "tiny-mixtral-chat")
    assert not any(torch.equal(saved[name], base) for name, base in _experts(tiny_mixtral.snapshot_path).items())


def test_lora_on_a_mixture_of_experts_trains_the_experts_and_saves_them_merged(
    tiny_mixtral: TinyModel, moe_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    run = _run(tmp_path, moe_hf_home, offline_env, name="tiny-moe-lora", lora={"enabled": True, "r": 8})
    assert run.returncode == 0, run.output
    assert run.result.outcome is Outcome.SUCCEEDED
    base = _experts(tiny_mixtral.snapshot_path)
    merged = _experts(tmp_path / "work" / "output" / "tiny-mixtral-chat")
    assert merged.keys() == base.keys()
    assert all(merged[name].shape == base[name].shape for name in base)
    assert not any(torch.equal(merged[name], base[name]) for name in base)  # all-linear adapted every stack


def test_lora_dropout_on_a_mixture_of_experts_is_refused_by_field(
    tiny_mixtral: TinyModel, moe_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    lora = {"enabled": True, "r": 8, "dropout": 0.1}
    run = _run(tmp_path, moe_hf_home, offline_env, name="tiny-moe-dropout", lora=lora)
    assert run.returncode != 0
    error = run.result.error
    assert error is not None
    assert (error.error_class, error.reason) == (ErrorClass.INVALID_INPUT, "LoraDropoutUnsupported")
    assert error.message.startswith("lora.dropout 0.1 cannot apply")
    assert (error.hint or "").startswith("Set lora.dropout to 0, or lora.targetModules to the attention projections")
