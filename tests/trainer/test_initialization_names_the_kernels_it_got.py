"""What Initialization says about the kernels: the choice on screen, a warning where the template's wish fell back."""

from __future__ import annotations

from pathlib import Path

import torch

from kubetune_trainer.contract import AttentionKernel
from kubetune_trainer.stages.initialize import announce_kernels
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.attention import AttentionShape, choose_attention
from kubetune_trainer.training.compile import CompileOutcome
from kubetune_trainer.training.precision import plan_precision
from kubetune_trainer.training.setup import TrainingSetup

from .training_jobs import trainer_config, training_context


def test_a_template_asking_varlen_and_compile_on_a_cpu_gets_warnings_naming_both(
    tiny_llama: TinyModel, tmp_path: Path
) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "t.jsonl")
    ctx, reporter, _ = training_context(config, model=tiny_llama, tokenizer=None, train=[])
    cpu = torch.device("cpu")
    shape = AttentionShape(heads=4, kv_heads=2, head_dim=16)
    setup = TrainingSetup(
        device=cpu,
        precision=plan_precision(config.runtime.precision, device=cpu),
        lora=False,
        attention=choose_attention(AttentionKernel.VARLEN, shape=shape, device=cpu, dtype=torch.float32),
        compiled=CompileOutcome(requested=True, compiled=False, reason="no C++ compiler on this machine"),
    )
    kernels = announce_kernels(ctx, setup)

    reasons = {warning.reason: warning.message for warning in ctx.journal.warnings}
    assert set(reasons) == {"AttentionFallback", "CompileFallback"}
    assert "template asked varlen" in reasons["AttentionFallback"]
    assert "CUDA" in reasons["AttentionFallback"]
    assert "no C++ compiler" in reasons["CompileFallback"]
    assert any(note.startswith("attention: sdpa (per example)") for note in reporter.notes)
    assert (kernels.attention, kernels.compiled, kernels.device) == (AttentionKernel.SDPA, False, "cpu")
    assert ctx.journal.performance == kernels  # the run's Result reports them


def test_auto_on_a_cpu_is_no_warning(tiny_llama: TinyModel, tmp_path: Path) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "t.jsonl")
    ctx, reporter, _ = training_context(config, model=tiny_llama, tokenizer=None, train=[])
    cpu = torch.device("cpu")
    setup = TrainingSetup(device=cpu, precision=plan_precision(config.runtime.precision, device=cpu), lora=False)
    announce_kernels(ctx, setup)
    assert ctx.journal.warnings == []
    assert reporter.notes == ["attention: sdpa (per example), template asked auto", "torch.compile: off"]


def test_lora_layers_all_linear_left_out_are_a_warning_naming_them(tiny_llama: TinyModel, tmp_path: Path) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "t.jsonl")
    ctx, _, _ = training_context(config, model=tiny_llama, tokenizer=None, train=[])
    cpu = torch.device("cpu")
    left_out = tuple(f"model.layers.0.mlp.{name}" for name in ("gate_proj", "up_proj", "down_proj"))
    setup = TrainingSetup(
        device=cpu, precision=plan_precision(config.runtime.precision, device=cpu), lora=True, lora_left_out=left_out
    )
    announce_kernels(ctx, setup)
    (warning,) = ctx.journal.warnings
    assert warning.reason == "LoraLayersLeftOut"
    assert "all-linear left 3 linear layer(s)" in warning.message
    assert "model.layers.0.mlp.down_proj" in warning.message
