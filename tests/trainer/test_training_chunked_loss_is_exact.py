"""The chunked loss equals the plain full-logit loss, forward and every gradient; it keeps at most a chunk of logits."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch
from torch.nn import functional
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma2Config, LlamaConfig

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.data.packing import ModelBatch, collate_packed, collate_padded, summed_token_loss
from kubetune_trainer.memory_model import loss_chunk_tokens
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.linear_cross_entropy import linear_cross_entropy
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.loss import summed_label_loss
from kubetune_trainer.training.setup import load_model

from .held_after_forward import bytes_in_use, in_a_fresh_process
from .training_jobs import chat_lines, tokenized

CHUNK = 7
"""Tokens per chunk in these tests: many chunks, the last one partial."""


def _plain_loss(model: Any, batch: ModelBatch) -> torch.Tensor:
    return summed_token_loss(model(**batch.model_inputs()).logits, batch.labels)


def _gradients(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_same_loss_and_gradients(model: torch.nn.Module, batch: ModelBatch) -> None:
    plain_loss = _plain_loss(model, batch)
    plain = _gradients(model, plain_loss)
    chunked_loss = summed_label_loss(model, batch, chunk_tokens=CHUNK)
    chunked = _gradients(model, chunked_loss)
    assert batch.label_tokens > 3 * CHUNK  # really several chunks
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=1e-5, atol=1e-5)
    assert plain
    assert plain.keys() == chunked.keys()
    for name, gradient in plain.items():
        torch.testing.assert_close(chunked[name], gradient, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_chunked_loss_and_gradients_equal_the_plain_loss(
    tiny_models: dict[str, TinyModel], arch: str, packing: bool
) -> None:
    model_path = tiny_models[arch].snapshot_path
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    examples = tokenized(tokenizer, chat_lines(5, seed=8))
    batch = collate_packed(examples) if packing else collate_padded(examples, pad_token_id=tokenizer.pad_token_id)
    _assert_same_loss_and_gradients(load_model(model_path, dtype=torch.float32), batch)


def _random_batch(vocab: int, *, seed: int) -> ModelBatch:
    generator = torch.Generator().manual_seed(seed)
    lengths = [23, 9, 31]

    class Example:
        def __init__(self, size: int) -> None:
            self.input_ids = torch.randint(0, vocab, (size,), generator=generator).tolist()
            # A masked "prompt" third, as chat data has.
            self.labels = [-100] * (size // 3) + self.input_ids[size // 3 :]

        def __len__(self) -> int:
            return len(self.input_ids)

    return collate_packed([Example(n) for n in lengths])  # type: ignore[list-item]


def _tiny(config: Any) -> Any:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.config.use_cache = False
    return model


def test_tied_embeddings_get_the_same_gradient() -> None:
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=97, tie_word_embeddings=True,
    )  # fmt: skip
    model = _tiny(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    _assert_same_loss_and_gradients(model, _random_batch(97, seed=1))


def test_soft_capped_logits_are_capped_per_chunk() -> None:
    config = Gemma2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, vocab_size=101, final_logit_softcapping=5.0, attn_implementation="eager",
    )  # fmt: skip
    _assert_same_loss_and_gradients(_tiny(config), _random_batch(101, seed=2))


def test_lora_adapters_get_the_same_gradient(tiny_llama: TinyModel) -> None:
    base = load_model(tiny_llama.snapshot_path, dtype=torch.float32)
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would leave A's gradient zero
            torch.nn.init.normal_(parameter, std=0.02)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    batch = collate_packed(tokenized(tokenizer, chat_lines(5, seed=9)))
    _assert_same_loss_and_gradients(model, batch)


def _largest_logits_kept(model: Any, batch: ModelBatch, *, vocab: int, chunk_tokens: int) -> int:
    """Rows of the largest vocabulary-wide tensor autograd keeps for backward (weights and their gradients left out)."""
    weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    rows = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.untyped_storage().data_ptr() not in weights and tensor.dim() and tensor.shape[-1] == vocab:
            rows.append(tensor.numel() // vocab)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = summed_label_loss(model, batch, chunk_tokens=chunk_tokens)
    loss.backward()  # type: ignore[no-untyped-call]
    return max(rows)


def test_a_linear_head_keeps_no_logits_for_backward() -> None:
    """Its gradients are taken in the forward pass, chunk by chunk: no logits kept, none recomputed."""
    vocab = 211
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=vocab,
    )  # fmt: skip
    model, batch = _tiny(config), _random_batch(vocab, seed=3)
    assert _largest_logits_kept(model, batch, vocab=vocab, chunk_tokens=10_000) == 0
    assert _largest_logits_kept(model, batch, vocab=vocab, chunk_tokens=CHUNK) == 0


def test_any_other_head_keeps_no_more_than_one_chunk_of_logits() -> None:
    vocab = 101
    config = Gemma2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, vocab_size=vocab, final_logit_softcapping=5.0, attn_implementation="eager",
    )  # fmt: skip
    model, batch = _tiny(config), _random_batch(vocab, seed=3)
    # One chunk holding everything keeps every labelled position's logits, as a plain loss does.
    assert _largest_logits_kept(model, batch, vocab=vocab, chunk_tokens=10_000) >= batch.label_tokens
    # In chunks nothing vocabulary-wide is kept: each chunk's logits are recomputed in backward.
    assert _largest_logits_kept(model, batch, vocab=vocab, chunk_tokens=CHUNK) <= CHUNK


class _PeakBetweenOperations(TorchDispatchMode):
    """The most bytes glibc held allocated after any operation run inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, bytes_in_use())
        return out


CHUNK_SHAPE = {"tokens": 1024, "width": 64, "vocab": 4096, "chunk": 256}


def chunk_peak(tokens: int, width: int, vocab: int, chunk: int, head_trains: bool) -> dict[str, float]:
    """The most bytes allocated over the inputs after any operation of `linear_cross_entropy` in bf16, the
    bytes it keeps for backward, and its loss's difference from `cross_entropy`'s (run in a fresh process)."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(tokens, width, generator=generator).to(torch.bfloat16).requires_grad_()
    weight = (torch.randn(vocab, width, generator=generator) * 0.02).to(torch.bfloat16).requires_grad_(head_trains)
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    targets[::5] = -100
    for _ in range(2):  # the first pass under a dispatch mode allocates for the mode itself
        hidden.grad = weight.grad = None
        gc.collect()
        before = bytes_in_use()
        with _PeakBetweenOperations() as sampled:
            loss = linear_cross_entropy(hidden, weight, targets, chunk_tokens=chunk)
        loss.backward()  # type: ignore[no-untyped-call]
    expected = functional.cross_entropy((hidden @ weight.t()).float(), targets, ignore_index=-100, reduction="sum")
    return {
        "peak": sampled.peak - before,
        # The gradients of the hidden states (and of a head that trains), taken in the forward, kept for backward.
        "kept": hidden.nbytes + (weight.nbytes if head_trains else 0),
        "loss_difference": float((loss - expected).abs() / expected.abs()),
    }


@pytest.mark.parametrize("head_trains", [True, False], ids=["full", "frozen-head"])
def test_a_chunk_holds_one_fp32_copy_of_its_logits(head_trains: bool) -> None:
    """In bf16 a chunk's transients are its fp32 logits, which become their gradient in place, and one bf16
    copy: 6 bytes per logit, as memory_model plans (cross_entropy then softmax held two fp32 tensors, and
    the last chunk's bf16 gradient lived on into the next chunk: 10)."""
    measured = in_a_fresh_process(chunk_peak, **CHUNK_SHAPE, head_trains=head_trains)
    logits = CHUNK_SHAPE["chunk"] * CHUNK_SHAPE["vocab"]
    kept = measured["kept"]
    assert kept + 6 * logits <= measured["peak"] <= kept + 6 * logits + logits // 4, measured
    assert measured["loss_difference"] < 1e-5


def test_chunk_size_holds_a_fixed_amount_of_fp32_logits() -> None:
    # 2,048 positions at Llama 3's 128,256 tokens (1 GiB of fp32 logits); a small vocabulary gets far more.
    assert loss_chunk_tokens(128256) == 2092
    assert loss_chunk_tokens(512) >= 65536


def _llama_97() -> Any:
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=97,
    )  # fmt: skip
    return _tiny(config)


def test_gradients_follow_the_loss_s_own_scale() -> None:
    """The step divides the summed loss by its label tokens (and fp16 multiplies it by a loss scale)."""
    model, batch = _llama_97(), _random_batch(97, seed=4)
    plain = _gradients(model, _plain_loss(model, batch) / 7.0)
    chunked = _gradients(model, summed_label_loss(model, batch, chunk_tokens=CHUNK) / 7.0)
    assert plain.keys() == chunked.keys()
    for name, gradient in plain.items():
        torch.testing.assert_close(chunked[name], gradient, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_without_autograd_the_loss_is_the_same_sum() -> None:
    model, batch = _llama_97(), _random_batch(97, seed=5)
    with torch.no_grad():
        plain = _plain_loss(model, batch)
        chunked = summed_label_loss(model, batch, chunk_tokens=CHUNK)
    assert not chunked.requires_grad
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_the_loss_and_gradients_stay_close_to_the_plain_ones() -> None:
    model, batch = _llama_97(), _random_batch(97, seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain_loss = _plain_loss(model, batch)
        plain = _gradients(model, plain_loss)
        chunked_loss = summed_label_loss(model, batch, chunk_tokens=CHUNK)
        chunked = _gradients(model, chunked_loss)
    assert chunked_loss.dtype is torch.float32
    torch.testing.assert_close(chunked_loss, plain_loss, rtol=1e-2, atol=0)
    assert all(chunked[name].dtype is gradient.dtype for name, gradient in plain.items())
    head_plain, head_chunked = plain["lm_head.weight"], chunked["lm_head.weight"]
    assert torch.nn.functional.cosine_similarity(head_chunked.flatten(), head_plain.flatten(), dim=0) > 0.999
