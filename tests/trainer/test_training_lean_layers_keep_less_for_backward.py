"""The lean RMSNorms and SwiGLU MLPs: transformers' losses and gradients, fewer bytes kept for backward.

`training.lean_layers` swaps each RMSNorm and SwiGLU MLP of a model onto a forward that keeps the
norm's input (not an fp32 copy, not its normalised output) and the MLP's gate and up outputs (not
silu's output, not the product). Each test compares a model with them against the same model with
transformers' own forwards, as a user of the trainer would: the loss and every gradient, and the
bytes a forward leaves allocated for backward.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from kubetune_trainer.contract import LoraConfig, RuntimeSettings
from kubetune_trainer.model_blocks import no_split_blocks
from kubetune_trainer.stages import initialize
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.compile import decoder_layers
from kubetune_trainer.training.lean_layers import lean_in, make_layers_lean
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.lora_fused import fuse_lora_updates
from kubetune_trainer.training.memory_plan import plan_memory

from .held_after_forward import held_after, in_a_fresh_process
from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl

HIDDEN, INTERMEDIATE, LAYERS, TOKENS = 64, 176, 2, 512


def _llama(*, dtype: torch.dtype = torch.float32, layers: int = LAYERS) -> Any:
    """A tiny random Llama whose norm weights are not all ones (so their gradients and products matter)."""
    config = LlamaConfig(
        hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=layers, num_attention_heads=8,
        num_key_value_heads=2, vocab_size=300, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(dtype)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)))
    return model


def _with_lora(model: Any, *, dropout: float = 0.0) -> Any:
    torch.manual_seed(5)
    adapted = apply_lora(model, LoraConfig(r=8, alpha=16, dropout=dropout, target_modules=["all-linear"], merge=False))
    fuse_lora_updates(adapted)
    with torch.no_grad():  # B starts at zero; a trained one makes the adapters' gradients reach every input
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    return adapted


def _own_and_lean(*, lora: bool, dtype: torch.dtype = torch.float32, dropout: float = 0.0) -> tuple[Any, Any]:
    own = _llama(dtype=dtype)
    lean = copy.deepcopy(own)
    outcome = make_layers_lean(lean)
    assert (outcome.norms, outcome.mlps, outcome.kept_own) == (2 * LAYERS + 1, LAYERS, 0)
    if lora:
        own, lean = _with_lora(own, dropout=dropout), _with_lora(lean, dropout=dropout)
    own.train()
    lean.train()
    return own, lean


def _loss_and_gradients(
    model: nn.Module, ids: torch.Tensor, *, seed: int = 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)  # the same dropout masks for both models
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), gradients


def _ids(tokens: int = TOKENS) -> torch.Tensor:
    return torch.randint(0, 300, (2, tokens // 2), generator=torch.Generator().manual_seed(1))


def _assert_same_gradients(own: dict[str, torch.Tensor], lean: dict[str, torch.Tensor], *, rel: float) -> None:
    assert own.keys() == lean.keys()
    assert own
    for name, expected in own.items():
        scale = expected.float().abs().max().item() + 1e-12
        error = (lean[name].float() - expected.float()).abs().max().item() / scale
        assert error < rel, (name, error)


@pytest.mark.parametrize(
    ("lora", "dropout"), [(False, 0.0), (True, 0.0), (True, 0.1)], ids=["full", "lora", "lora-dropout"]
)
def test_loss_and_gradients_equal_transformers_own(lora: bool, dropout: float) -> None:
    own, lean = _own_and_lean(lora=lora, dropout=dropout)
    own_loss, own_gradients = _loss_and_gradients(own, _ids())
    lean_loss, lean_gradients = _loss_and_gradients(lean, _ids())
    assert lean_loss.item() == pytest.approx(own_loss.item(), rel=1e-6)
    _assert_same_gradients(own_gradients, lean_gradients, rel=1e-5)
    if not lora:  # the norms' weights train and got their gradients
        assert any("norm" in name for name in lean_gradients)


def test_in_bf16_the_gradients_differ_by_rounding_only() -> None:
    own, lean = _own_and_lean(lora=False, dtype=torch.bfloat16)
    own_loss, own_gradients = _loss_and_gradients(own, _ids())
    lean_loss, lean_gradients = _loss_and_gradients(lean, _ids())
    assert lean_loss.item() == own_loss.item()  # the forwards run the same operations
    _assert_same_gradients(own_gradients, lean_gradients, rel=2e-2)  # a bf16 step is 2**-7 relative


def held_per_token_own_and_lean(*, lora: bool, checkpointing: bool) -> dict[str, float]:
    """Run in a fresh process: the bytes one forward leaves allocated per token, own and lean."""
    held = {}
    for name, model in zip(("own", "lean"), _own_and_lean(lora=lora), strict=True):
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        held[name] = _held_per_token(model)
    return held


def _held_per_token(model: nn.Module) -> float:
    """The bytes a forward of 1,024 tokens leaves allocated, per token: after a first pass (which compiles,
    if anything does), so that what it allocates for good stays out."""
    ids = _ids(1024)
    model(input_ids=ids, labels=ids).loss.backward()
    model.zero_grad(set_to_none=True)
    with held_after() as measured:
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return measured.bytes / ids.numel()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_forward_keeps_the_norms_outputs_and_two_intermediates_fewer_per_layer(lora: bool) -> None:
    held = in_a_fresh_process(held_per_token_own_and_lean, lora=lora, checkpointing=False)
    two_intermediates = LAYERS * 2 * INTERMEDIATE * 4  # silu's output and the product, fp32
    # The projections after each norm of a layer save its output: the lean layer recomputes it for them.
    for_projections = 2 * LAYERS * HIDDEN * 4
    # Full fine-tuning also stops keeping each norm's normalised output for its weight's gradient.
    for_norm_weights = 0 if lora else (2 * LAYERS + 1) * HIDDEN * 4
    expected = two_intermediates + for_projections + for_norm_weights
    assert held["own"] - held["lean"] == pytest.approx(expected, rel=0.1)


def test_under_activation_checkpointing_the_hooks_step_aside() -> None:
    """Checkpointing's own saved-tensor hooks stay in charge: same gradients, no more held than without lean."""
    own, lean = _own_and_lean(lora=False)
    for model in (own, lean):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    own_loss, own_gradients = _loss_and_gradients(own, _ids())
    lean_loss, lean_gradients = _loss_and_gradients(lean, _ids())
    assert lean_loss.item() == pytest.approx(own_loss.item(), rel=1e-6)
    _assert_same_gradients(own_gradients, lean_gradients, rel=1e-5)
    held = in_a_fresh_process(held_per_token_own_and_lean, lora=False, checkpointing=True)
    assert held["lean"] <= held["own"] * 1.02


class _OffsetRMSNorm(nn.Module):
    """Gemma's formula: the weight is an offset from one. Shaped like an RMSNorm, computing another thing."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(width))
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return normalised * (1.0 + self.weight)


def test_a_norm_of_another_formula_keeps_its_own_forward() -> None:
    model = nn.Sequential(_OffsetRMSNorm(16))
    outcome = make_layers_lean(model)
    assert (outcome.norms, outcome.kept_own) == (0, 1)
    assert type(model[0]) is _OffsetRMSNorm
    assert "1 kept their own forward" in outcome.message()


def test_a_model_on_the_meta_device_is_left_as_it_is() -> None:
    with torch.device("meta"):
        model = _llama()
    outcome = make_layers_lean(model)
    assert (outcome.norms, outcome.mlps) == (0, 0)


def test_lean_twice_changes_nothing_more() -> None:
    model = _llama()
    make_layers_lean(model)
    classes = [type(module) for module in model.modules()]
    again = make_layers_lean(model)
    assert [type(module) for module in model.modules()] == classes
    assert (again.norms, again.mlps) == (2 * LAYERS + 1, LAYERS)
    assert not any(type(module).__name__.startswith("LeanLean") for module in model.modules())


PARTITIONED = "aot_eager_decomp_partition"
"""inductor's graphs cut by inductor's min-cut partitioner (what it keeps for backward), run by eager kernels:
what a compiled run keeps, measured without a C++ compiler."""


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_decoder_layer_compiles_as_one_graph(lora: bool) -> None:
    """Under torch.compile a lean layer runs its own class's operations (the MLP's product in a checkpoint
    region): one graph, the eager lean layer's output and gradients."""
    torch._dynamo.reset()
    _, lean = _own_and_lean(lora=lora)
    layers = lean.base_model.model.model.layers if lora else lean.model.layers
    layer = layers[0]
    hidden = torch.randn(1, 32, HIDDEN, requires_grad=True)
    position_ids = torch.arange(32).unsqueeze(0)
    embeddings = _rotary(lean, hidden, position_ids)

    def run(module: Any) -> tuple[torch.Tensor, torch.Tensor]:
        hidden.grad = None
        out = module(hidden, position_embeddings=embeddings, attention_mask=None, position_ids=position_ids)
        out = out[0] if isinstance(out, tuple) else out
        out.square().sum().backward()
        assert hidden.grad is not None
        return out.detach(), hidden.grad.clone()

    eager_out, eager_grad = run(layer)
    compiled = torch.compile(layer, backend=PARTITIONED, fullgraph=True)
    compiled_out, compiled_grad = run(compiled)
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_compiled_layers_under_activation_checkpointing_train_as_eager_ones() -> None:
    """A checkpointed template that compiles: the product's region nests inside the layer's checkpoint."""
    torch._dynamo.reset()
    own, lean = _own_and_lean(lora=False)
    for model in (own, lean):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    for layer in decoder_layers(lean):
        layer.compile(backend=PARTITIONED)
    own_loss, own_gradients = _loss_and_gradients(own, _ids())
    lean_loss, lean_gradients = _loss_and_gradients(lean, _ids())
    assert lean_loss.item() == pytest.approx(own_loss.item(), rel=1e-6)
    _assert_same_gradients(own_gradients, lean_gradients, rel=1e-5)


def _rotary(model: Any, hidden: torch.Tensor, position_ids: torch.Tensor) -> Any:
    rotary = next(module for name, module in model.named_modules() if name.endswith("rotary_emb"))
    return rotary(hidden, position_ids)


def held_per_token_compiled(*, lora: bool, dtype: str) -> dict[str, float]:
    """Run in a fresh process: the bytes one forward leaves per token, lean eager and compiled, and compiled
    with transformers' own MLPs (the norms lean, so that the MLPs are the only difference)."""
    torch._dynamo.reset()
    _, lean = _own_and_lean(lora=lora, dtype=getattr(torch, dtype))
    compiled_own, compiled_lean = copy.deepcopy(lean), copy.deepcopy(lean)
    for module in compiled_own.modules():
        if type(module).__name__ == "LeanLlamaMLP":
            module.__class__ = type(module).__mro__[1]  # transformers' LlamaMLP
    for model in (compiled_own, compiled_lean):
        for layer in decoder_layers(model):
            layer.compile(backend=PARTITIONED)
    models = {"lean": lean, "compiled-lean": compiled_lean, "compiled-own": compiled_own}
    return {name: _held_per_token(model) for name, model in models.items()}


@pytest.mark.parametrize(
    ("lora", "dtype"), [(False, "float32"), (True, "float32"), (False, "bfloat16")], ids=["full", "lora", "full-bf16"]
)
def test_compiled_layers_keep_what_eager_lean_layers_keep(lora: bool, dtype: str) -> None:
    """Compiled (the 1B template's default), the layers run their own operations in checkpoint regions that
    tell inductor's partitioner what to recompute, as the eager lean layers do: the norms' outputs, and the
    MLP's product, which the partitioner alone would keep (it never recomputes what a matmul reads in
    backward). The memory plan counts the two alike."""
    held = in_a_fresh_process(held_per_token_compiled, lora=lora, dtype=dtype)
    element = 2 if dtype == "bfloat16" else 4
    assert held["compiled-lean"] == pytest.approx(held["lean"], rel=0.03)
    product = LAYERS * INTERMEDIATE * element
    assert held["compiled-own"] - held["compiled-lean"] == pytest.approx(product, rel=0.15)


def test_initialization_makes_the_job_model_lean(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    lines = chat_lines(4, seed=3)
    config = trainer_config(
        tiny_llama, work_dir=tmp_path, training_file=write_jsonl(tmp_path / "t.jsonl", lines), n_evals=0
    )
    ctx, _, downloaded = training_context(
        config, model=tiny_llama, tokenizer=tokenizer, train=tokenized(tokenizer, lines)
    )
    model = initialize.run(ctx, downloaded).model
    names = {type(module).__name__ for module in model.modules()}
    assert {"LeanLlamaRMSNorm", "LeanLlamaMLP", "LeanLlamaDecoderLayer"} <= names
    assert not {"LlamaRMSNorm", "LlamaMLP", "LlamaDecoderLayer"} & names
    assert lean_in(model) == (True, True)


def test_the_memory_plan_counts_the_forwards_the_model_runs(tmp_path: Path) -> None:
    """A model whose norms and MLPs kept their own forwards is planned with more bytes per token."""
    runtime = RuntimeSettings(work_dir=str(tmp_path / "work"), cache_dir=str(tmp_path / "hf"))
    own, lean = _own_and_lean(lora=False)
    plans = [
        plan_memory(
            model, runtime=runtime, lora_rank=None, max_seq_length=512, device=torch.device("cpu"), world_size=1
        )
        for model in (own, lean)
    ]
    assert lean_in(own) == (False, False)
    assert lean_in(lean) == (True, True)
    assert plans[0].activation_bytes_per_token > plans[1].activation_bytes_per_token


def test_a_module_whose_instance_has_its_own_forward_is_left_alone() -> None:
    """A wrapper set on the instance (as hook libraries do) would shadow the class's forward: no swap."""
    model = _llama()
    norm = model.model.norm
    norm.forward = norm.forward  # an instance attribute, as accelerate's hooks set one
    outcome = make_layers_lean(model)
    assert type(norm).__name__ == "LlamaRMSNorm"
    assert outcome.norms == 2 * LAYERS


def test_fsdp_still_shards_each_lean_decoder_layer() -> None:
    """FSDP2 shards the classes HF names as never to be split: the lean layers' subclasses too."""
    model = _llama()
    make_layers_lean(model)
    blocks = no_split_blocks(model)
    assert [type(block).__name__ for block in blocks] == ["LeanLlamaDecoderLayer"] * LAYERS
