"""torch.compile as a template option: compiled where it works; where it fails, eager with the reason, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional
from transformers import LlamaConfig, LlamaForCausalLM

from kubetune_trainer.contract import AttentionKernel
from kubetune_trainer.training import attention
from kubetune_trainer.training.attention import use_attention
from kubetune_trainer.training.compile import compile_layers, compiler_missing, decoder_layers, probe_pass

from .held_after_forward import in_a_fresh_process


def _tiny(*, head_dim: int | None = None) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
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


PARTITIONED = "aot_eager_decomp_partition"
"""inductor's graphs and partitioner with eager kernels: the compiled path, without a C++ compiler."""


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_compiled_layers_train_as_eager_ones(lora: bool) -> None:
    """The layers as a GPU run compiles them (lean norms and MLPs, LoRA's fused update, packed rows of
    changing lengths, so dynamo recompiles for dynamic shapes): the same losses and weights as eager."""
    torch._dynamo.reset()
    models = [_trainer_model(lora=lora) for _ in range(2)]
    outcome = compile_layers(models[1], requested=True, device=torch.device("cpu"), vocab_size=64, backend=PARTITIONED)
    assert outcome.compiled, outcome.reason
    assert outcome.message() == "torch.compile: 2 decoder layers compiled"
    before = {name: p.detach().clone() for name, p in models[0].named_parameters() if p.requires_grad}
    losses = [_train(model, steps=4) for model in models]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    trained = [{name: p.detach() for name, p in model.named_parameters() if p.requires_grad} for model in models]
    assert trained[0].keys() == trained[1].keys() == before.keys()
    for name, weight in trained[0].items():
        # AdamW divides by each gradient's root mean square, so rounding differences in tiny gradients move
        # the weights by a little of a step: measured against the steps the weights took.
        moved = (weight - before[name]).abs().max()
        assert (trained[1][name] - weight).abs().max() <= 2e-3 * moved, name


@pytest.mark.parametrize("head_dim", [8, 128], ids=["head-8", "head-128"])
def test_one_graph_serves_the_probe_and_every_micro_batch_length(head_dim: int) -> None:
    """Dynamic shapes from the first trace: the probe's compile is the only one, for every layer and every
    micro-batch's length and document count, also where the heads are as wide as a probe row of 128 tokens
    would be. In a fresh process, as a run compiles: what an earlier test left in the process (dynamo's
    caches, anything the layers look up once) would hide a recompile."""
    assert in_a_fresh_process(graphs_compiled, head_dim=head_dim) == {"after_probe": 1, "after_training": 1}


def graphs_compiled(*, head_dim: int) -> dict[str, int]:
    """Run in the fresh process: the graphs dynamo compiles for the probe, then for three training steps.
    The varlen path as on a GPU, its CUDA kernel stood in for by causal sdpa over the row (traceable on a
    CPU; what it computes does not matter here)."""
    attention._RESOLVED["varlen"] = attention._VarlenApi(function=_varlen_stand_in, window=True, gqa=True, scale=True)
    graphs: list[int] = []

    def counting(graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        graphs.append(len(graph.graph.nodes))
        return graph.forward

    model = _trainer_model(lora=False, head_dim=head_dim)
    use_attention(model, AttentionKernel.VARLEN)
    outcome = compile_layers(model, requested=True, device=torch.device("cpu"), vocab_size=64, backend=counting)
    assert outcome.compiled, outcome.reason
    after_probe = len(graphs)  # the probe's packed row of two examples, traced once for both layers
    _train(model, steps=3)  # rows of other lengths and example counts
    return {"after_probe": after_probe, "after_training": len(graphs)}


def _varlen_stand_in(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: Any, max_k: Any, **options: Any) -> Any:  # noqa: PLR0917 (varlen_attn's own signature)
    heads = [tensor.transpose(0, 1)[None] for tensor in (q, k, v)]
    out = functional.scaled_dot_product_attention(
        *heads, is_causal=True, scale=options["scale"], enable_gqa=options["enable_gqa"]
    )
    return out[0].transpose(0, 1)


def _trainer_model(*, lora: bool, head_dim: int | None = None) -> nn.Module:
    from kubetune_trainer.contract import LoraConfig
    from kubetune_trainer.training.lean_layers import make_layers_lean
    from kubetune_trainer.training.lora import apply_lora
    from kubetune_trainer.training.lora_fused import fuse_lora_updates

    model: nn.Module = _tiny(head_dim=head_dim)
    make_layers_lean(model)
    if lora:
        torch.manual_seed(1)
        model = apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
        fuse_lora_updates(model)
    model.train()
    return model


def _train(model: nn.Module, *, steps: int) -> torch.Tensor:
    """AdamW steps on packed rows of 2-4 examples of 5-40 tokens, the same rows for every model."""
    from kubetune_trainer.data.packing import collate_packed
    from kubetune_trainer.data.tokenization import TokenizedExample
    from kubetune_trainer.training.loss import summed_label_loss

    generator = torch.Generator().manual_seed(2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        lengths = torch.randint(5, 40, (int(torch.randint(2, 5, (1,), generator=generator)),), generator=generator)
        examples = [
            TokenizedExample(input_ids=ids, labels=ids)
            for ids in (torch.randint(0, 64, (int(n),), generator=generator).tolist() for n in lengths)
        ]
        batch = collate_packed(examples)
        loss = summed_label_loss(model, batch) / batch.label_tokens
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return torch.stack(losses)
