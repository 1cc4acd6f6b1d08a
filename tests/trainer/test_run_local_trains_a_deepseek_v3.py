"""A model no template names, from manifest to saved model: a tiny DeepSeek V3 (compressed attention whose query
and key heads are wider than its values, a dense first layer, routed and shared experts) trained by
`kubetune run --local`, full and LoRA. The job is told what kubetune cannot vouch for: the memory plan was never
checked against this architecture, and LoRA's all-linear (through peft) leaves the dense layer's MLP and the shared
experts frozen."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.contract import Outcome
from kubetune_trainer.tiny_model import write_tiny_model

from .local_runs import assert_saved_model_loads, train_tiny_chat

REPO = "tiny-org/tiny-deepseek-v3"


@pytest.fixture(scope="module")
def deepseek_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("deepseek-hf-home")
    write_tiny_model(arch="deepseek_v3", repo_id=REPO, hf_home=home)
    return home


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_tiny_deepseek_v3_trains_saves_and_is_warned_about_what_is_unchecked(
    lora: bool, deepseek_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    run = train_tiny_chat(
        REPO, tmp_path, hf_home=deepseek_hf_home, environ=offline_env, lora=lora, name="tiny-deepseek"
    )
    assert run.returncode == 0, run.output
    result = run.result
    assert result.outcome is Outcome.SUCCEEDED
    assert result.model is not None
    assert result.model.shape is not None
    assert (result.model.shape.num_experts, result.model.shape.dense_layers) == (4, 1)
    warnings = {warning.reason: warning.message for warning in result.warnings}
    assert "model_type deepseek_v3" in warnings["MemoryPlanUnmeasured"]
    if lora:
        assert "model.layers.0.mlp.gate_proj" in warnings["LoraLayersLeftOut"]
        assert "model.layers.1.mlp.shared_experts.down_proj" in warnings["LoraLayersLeftOut"]
    else:
        assert "LoraLayersLeftOut" not in warnings
    assert_saved_model_loads(run, "deepseek_v3")
