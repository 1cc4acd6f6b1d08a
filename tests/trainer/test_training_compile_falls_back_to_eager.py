"""torch.compile as a template option: compiled where it works; where it fails, eager with the reason, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from kubetune_trainer.contract import AttentionKernel
from kubetune_trainer.training.attention import use_attention
from kubetune_trainer.training.compile import compile_layers, compiler_missing, decoder_layers, probe_pass


def _tiny() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_cache=False,
    )
    model = LlamaForCausalLM(config)
    use_attention(model, AttentionKernel.SDPA)
    return model


def test_off_by_default_nothing_is_compiled() -> None:
    model = _tiny()
    outcome = compile_layers(model, requested=False, device=torch.device("cpu"), vocab_size=64)
    assert (outcome.requested, outcome.compiled) == (False, False)
    assert outcome.message() == "torch.compile: off"
    assert all(layer._compiled_call_impl is None for layer in decoder_layers(model))


def test_a_compilation_that_fails_leaves_the_layers_eager_and_says_why() -> None:
    model = _tiny()
    eager = probe_logits(model)

    def failing(compiled: nn.Module) -> None:
        assert all(layer._compiled_call_impl is not None for layer in decoder_layers(compiled))
        raise RuntimeError("InductorError: C++ compile error\nlong details")

    outcome = compile_layers(model, requested=True, device=torch.device("cpu"), vocab_size=64, probe=failing)
    assert outcome.requested
    assert not outcome.compiled
    assert outcome.reason == "compilation failed: RuntimeError: InductorError: C++ compile error"
    assert "running eager" in outcome.message()
    layers = decoder_layers(model)
    assert len(layers) == 2
    assert all(layer._compiled_call_impl is None for layer in layers)
    torch.testing.assert_close(probe_logits(model), eager)  # the model runs, as before


def test_a_machine_without_a_compiler_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, c++ or clang++
    assert "no C++ compiler" in str(compiler_missing(torch.device("cpu")))
    outcome = compile_layers(_tiny(), requested=True, device=torch.device("cpu"), vocab_size=64)
    assert not outcome.compiled
    assert "no C++ compiler" in str(outcome.reason)


def test_the_probe_pass_trains_a_packed_row_and_leaves_no_gradient() -> None:
    model = _tiny()
    probe_pass(model, device=torch.device("cpu"), vocab_size=64)
    assert all(parameter.grad is None for parameter in model.parameters())


def probe_logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(input_ids=torch.arange(10)[None] % 64).logits
    return logits
