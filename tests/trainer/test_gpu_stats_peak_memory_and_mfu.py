"""Peak GPU memory and MFU: from the detected GPU's bf16 peak, in progress, Result and metrics; absent on a CPU."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest
from torch import nn
from transformers import AutoModelForCausalLM, GraniteMoeConfig, LlamaConfig, MixtralConfig

from kubetune_trainer.contract import Progress
from kubetune_trainer.memory_model import ModelShape
from kubetune_trainer.metrics import TrainerMetrics
from kubetune_trainer.training.gpu_stats import GpuStats, bf16_peak_flops, parameter_count
from kubetune_trainer.training.loss import causal_lm_of


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362e12),
        ("Tesla T4", None),
        ("cpu", None),
    ],
)
def test_the_bf16_peak_is_looked_up_by_the_gpu_name(name: str, peak: float | None) -> None:
    assert bf16_peak_flops(name) == peak


def test_mfu_is_six_n_tokens_per_second_over_the_peak_of_every_gpu() -> None:
    h200 = GpuStats(
        device=torch.device("cuda"), device_name="NVIDIA H200", parameters=1_235_814_400, gpus=1, peak_flops=989e12
    )
    # The figure: 16,207 tok/s of the 1.24B model on one H200 is 12.2% MFU.
    mfu = h200.mfu(16_207)
    assert mfu is not None
    assert round(mfu, 3) == 0.122
    two = GpuStats(
        device=torch.device("cuda"), device_name="NVIDIA H200", parameters=1_235_814_400, gpus=2, peak_flops=989e12
    )
    assert two.mfu(2 * 16_207) == pytest.approx(mfu)
    unknown = GpuStats(device=torch.device("cuda"), device_name="Tesla T4", parameters=10, gpus=1, peak_flops=None)
    assert unknown.mfu(1000.0) is None


def test_on_a_cpu_there_is_no_mfu_and_no_gpu_memory() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied: counted once
    stats = GpuStats.for_run(model, device=torch.device("cpu"), world_size=1)
    assert stats.parameters == parameter_count(model) == 10 * 4 + 10
    assert stats.device_name == "cpu"
    assert stats.mfu(5000.0) is None
    assert stats.peak_memory_bytes() is None


def _scrape(metrics: TrainerMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and line[0] != "#"}


def test_metrics_show_peak_memory_and_mfu_only_once_reported() -> None:
    metrics = TrainerMetrics(CollectorRegistry())
    now = datetime(2026, 12, 4, tzinfo=UTC)
    metrics.progress(Progress(step=1, total_steps=4, tokens_per_second=900.0, heartbeat_time=now))
    before = _scrape(metrics)
    assert before["kubetune_trainer_tokens_per_second"] == 900.0
    assert "kubetune_trainer_mfu" not in before  # a CPU run: absent, not 0
    assert "kubetune_trainer_peak_gpu_memory_bytes" not in before
    metrics.progress(Progress(step=2, total_steps=4, peak_gpu_memory_bytes=3 * 2**30, mfu=0.41, heartbeat_time=now))
    after = _scrape(metrics)
    assert after["kubetune_trainer_peak_gpu_memory_bytes"] == 3 * 2**30
    assert after["kubetune_trainer_mfu"] == 0.41


MIXTRAL_8X7B = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 32000, "tie_word_embeddings": False, "num_local_experts": 8,
    "num_experts_per_tok": 2,
}  # fmt: skip


def test_a_mixture_of_experts_mfu_counts_the_parameters_a_token_computes_with() -> None:
    """Mixtral 8x7B: 46.7B parameters, 12.9B of them a token (two of eight experts), the N of its 6N; counting all
    would report 3.6 times its MFU. A dense model's N is every parameter."""
    shape = ModelShape.from_config(MIXTRAL_8X7B)
    assert shape.parameters == 46_702_792_704
    assert round(shape.active_parameters / 1e9, 1) == 12.9
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = MixtralConfig(**{**MIXTRAL_8X7B, **small, "num_key_value_heads": 2, "vocab_size": 101})
    torch.manual_seed(0)
    mixtral = AutoModelForCausalLM.from_config(config)
    stats = GpuStats.for_run(mixtral, device=torch.device("cpu"), world_size=1)
    idle_experts = 2 * (8 - 2) * 3 * 32 * 64  # layers x experts not routed to x an expert's weights
    assert stats.parameters == parameter_count(mixtral) - idle_experts
    llama = AutoModelForCausalLM.from_config(
        LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=101)
    )
    assert GpuStats.for_run(llama, device=torch.device("cpu"), world_size=1).parameters == parameter_count(llama)
    # Granite's MoE rescales its logits after the head (so the loss takes the plain path): still counted as a MoE.
    granite_config = GraniteMoeConfig(
        **small, num_key_value_heads=2, vocab_size=101, num_local_experts=8, num_experts_per_tok=2, logits_scaling=8.0
    )
    granite = AutoModelForCausalLM.from_config(granite_config)
    assert causal_lm_of(granite) is None
    assert GpuStats.for_run(granite, device=torch.device("cpu"), world_size=1).parameters == (
        parameter_count(granite) - idle_experts
    )
