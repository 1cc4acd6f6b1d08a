"""Packed rows attend through a document-masked kernel, never a dense mask, and stay exact.

Each kernel that runs on a CPU is checked against the examples run alone (fp32, 1e-5): the
per-example sdpa for training (forward and gradients) and flex_attention for the forward pass
(torch has no flex backward on a CPU). varlen is a CUDA kernel: its boundaries, its argument
layout and its fallback are checked here, its numbers by the probe on a GPU.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch.nn import functional
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.masking_utils import create_causal_mask

from kubetune_trainer.contract import AttentionKernel
from kubetune_trainer.data.packing import collate_packed, collate_padded, summed_token_loss
from kubetune_trainer.data.tokenization import TokenizedExample
from kubetune_trainer.training import attention
from kubetune_trainer.training.attention import (
    AttentionShape,
    choose_attention,
    cumulative_lengths,
    documents_from_positions,
    per_example_attention,
    use_attention,
    varlen_attention,
)

from .test_data_packing_is_exact import alone_losses, examples, packed_losses, tiny_llama, tokenizer  # noqa: F401

TOLERANCE = 1e-5


def _trained_gradients(model: LlamaForCausalLM, batches: list[Any], label_tokens: int) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.train()
    for batch in batches:
        loss = summed_token_loss(model(**batch.model_inputs()).logits, batch.labels) / label_tokens
        loss.backward()  # type: ignore[no-untyped-call]
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.eval()
    return grads


def test_per_example_sdpa_trains_packed_rows_exactly(
    tokenizer: PreTrainedTokenizerFast,  # noqa: F811
    examples: list[TokenizedExample],  # noqa: F811
) -> None:
    model = tiny_llama(len(tokenizer), attention="sdpa")
    alone = alone_losses(model, examples)
    label_tokens = sum(example.label_tokens for example in examples)
    reference = _trained_gradients(model, [collate_padded([e], pad_token_id=0) for e in examples], label_tokens)

    use_attention(model, AttentionKernel.SDPA)
    assert model.config._attn_implementation == "kubetune_per_example"
    assert packed_losses(model, examples) == pytest.approx(alone, abs=TOLERANCE, rel=0)
    packed = _trained_gradients(model, [collate_packed(examples)], label_tokens)
    assert packed.keys() == reference.keys()
    for name, gradient in packed.items():
        torch.testing.assert_close(gradient, reference[name], atol=TOLERANCE, rtol=0, msg=name)
    # Padded micro-batches (packing: false) still go through transformers' sdpa with their mask.
    padded = collate_padded(examples, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(**padded.model_inputs()).logits
    from kubetune_trainer.data.packing import token_losses

    per_token = token_losses(logits, padded.labels)
    rows = [float(per_token[row].sum()) / example.label_tokens for row, example in enumerate(examples)]
    assert rows == pytest.approx(alone, abs=TOLERANCE, rel=0)


def test_flex_attention_forward_is_exact_on_packed_rows(
    tokenizer: PreTrainedTokenizerFast,  # noqa: F811
    examples: list[TokenizedExample],  # noqa: F811
) -> None:
    model = tiny_llama(len(tokenizer), attention="sdpa")
    alone = alone_losses(model, examples)
    use_attention(model, AttentionKernel.FLEX)
    assert packed_losses(model, examples) == pytest.approx(alone, abs=TOLERANCE, rel=0)


def test_a_packed_row_gets_no_dense_mask(
    tokenizer: PreTrainedTokenizerFast,  # noqa: F811
    examples: list[TokenizedExample],  # noqa: F811
) -> None:
    model = tiny_llama(len(tokenizer), attention="sdpa")
    batch = collate_packed(examples)
    embeddings = model.get_input_embeddings()(batch.input_ids)

    def mask() -> Any:
        return create_causal_mask(
            config=model.config,
            inputs_embeds=embeddings,
            attention_mask=None,
            past_key_values=None,
            position_ids=batch.position_ids,
        )

    dense = mask()  # transformers' sdpa: rows x rows booleans
    assert isinstance(dense, torch.Tensor)
    assert dense.shape[-2:] == (batch.tokens, batch.tokens)
    for kernel in (AttentionKernel.SDPA, AttentionKernel.FLEX, AttentionKernel.VARLEN):
        use_attention(model, kernel)
        assert mask() is None, kernel


def test_the_packing_records_document_boundaries_as_flash_kernels_take_them(
    examples: list[TokenizedExample],  # noqa: F811
) -> None:
    batch = collate_packed(examples[:3])
    lengths = [len(example) for example in examples[:3]]
    expected = [0, lengths[0], lengths[0] + lengths[1], sum(lengths)]
    assert batch.cu_seq_lens is not None
    assert batch.cu_seq_lens.dtype == torch.int32
    assert batch.cu_seq_lens.tolist() == expected
    assert batch.max_length == max(lengths)
    inputs = batch.model_inputs()
    assert inputs["cu_seq_lens_q"].tolist() == inputs["cu_seq_lens_k"].tolist() == expected
    assert inputs["max_length_q"] == inputs["max_length_k"] == max(lengths)
    # The same boundaries, read back from the positions (the path for a caller that passes only those).
    assert batch.position_ids is not None
    found = documents_from_positions(batch.position_ids)
    assert found is not None
    assert found.tolist() == expected
    assert documents_from_positions(torch.arange(7)[None]) is None
    assert "cu_seq_lens_q" not in collate_padded(examples[:3], pad_token_id=0).model_inputs()
    assert cumulative_lengths([3, 4]).tolist() == [0, 3, 7]


def test_varlen_call_gets_cumulative_lengths_heads_and_causal_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """varlen's argument layout, checked with a stand-in kernel on the CPU (the real one is CUDA-only)."""
    seen: dict[str, Any] = {}

    def fake_varlen(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: int, max_k: int, **options: Any) -> Any:  # noqa: PLR0917 (varlen_attn's own signature)
        seen.update(cu=cu_q.tolist(), max=(max_q, max_k), shapes=(q.shape, k.shape), options=options)
        assert options["window_size"] == (-1, 0)
        return _flash_like(q, k, v, cu_q, cu_k, max_q, max_k, **options)

    monkeypatch.setattr(
        attention,
        "_varlen_api",
        lambda: attention._VarlenApi(function=fake_varlen, window=True, gqa=False, scale=True),
    )
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 12, 8), torch.randn(1, 2, 12, 8), torch.randn(1, 2, 12, 8)
    out = varlen_attention(q, k, v, cumulative_lengths([5, 7]), 7, scale=0.3, window=None)
    assert seen["cu"] == [0, 5, 12]
    assert seen["max"] == (7, 7)
    assert seen["shapes"] == (torch.Size([12, 4, 8]), torch.Size([12, 4, 8]))  # KV heads repeated: no enable_gqa
    torch.testing.assert_close(out, per_example_attention(q, k, v, [5, 7], scale=0.3))


def _flash_like(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: int, max_k: int, **options: Any) -> Any:  # noqa: PLR0917 (varlen_attn's own signature)
    """A stand-in for the flash kernel that, like it, takes one head size for query, key and value."""
    assert q.shape[-1] == k.shape[-1] == v.shape[-1], "the flash kernel takes one head size"
    qh, kh, vh = (t.transpose(0, 1)[None] for t in (q, k, v))
    return per_example_attention(qh, kh, vh, cu_q.diff().tolist(), scale=options["scale"])[0]


def test_values_narrower_than_queries_go_through_varlen_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepSeek's compressed attention: query and key heads of 192, values of 128 (here 24 and 16). The values
    are padded for the kernel and the output cut back: output and gradients as the examples alone give them."""
    flash = attention._VarlenApi(function=_flash_like, window=True, gqa=True, scale=True)
    monkeypatch.setattr(attention, "_varlen_api", lambda: flash)
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 12, 24), torch.randn(1, 4, 12, 24), torch.randn(1, 4, 12, 16)
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    reference_inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = varlen_attention(*inputs, cumulative_lengths([5, 7]), 7, scale=0.2, window=None)
    reference = per_example_attention(*reference_inputs, [5, 7], scale=0.2)
    assert out.shape == reference.shape == (1, 12, 4, 16)
    torch.testing.assert_close(out, reference, atol=TOLERANCE, rtol=0)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()  # type: ignore[no-untyped-call]
    (reference * weights).sum().backward()  # type: ignore[no-untyped-call]
    for got, want in zip(inputs, reference_inputs, strict=True):
        assert got.grad is not None
        assert want.grad is not None
        torch.testing.assert_close(got.grad, want.grad, atol=TOLERANCE, rtol=0)


def test_the_kernel_probe_uses_the_model_s_own_head_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny DeepSeek V3: its config's `head_dim` is the rotary part alone; the probe runs the sizes its layers
    attend with (query and key 16 + 8, values 16), through the padded path, and agrees."""
    config = DeepseekV3Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, kv_lora_rank=16,
        q_lora_rank=None, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_group=1, topk_group=1,
    )  # fmt: skip
    shape = AttentionShape.of(DeepseekV3ForCausalLM(config))
    assert (shape.head_dim, shape.value_head_dim) == (24, 16)
    flash = attention._VarlenApi(function=_flash_like, window=True, gqa=True, scale=True)
    monkeypatch.setattr(attention, "_varlen_api", lambda: flash)
    cpu = torch.device("cpu")
    assert attention.probe_kernel(AttentionKernel.VARLEN, shape=shape, device=cpu, dtype=torch.float32) is None
    llama = AttentionShape.of(tiny_llama(64, attention="sdpa"))
    assert (llama.head_dim, llama.value_head_dim) == (16, None)


def test_a_compiled_layer_looks_the_kernel_up_without_a_warning() -> None:
    """The compiled decoder layers trace the varlen lookup: a compiled run's log stays free of dynamo's
    warning about lru_cache-wrapped functions (which it gives for every one it meets)."""
    torch._dynamo.reset()
    eager = attention._varlen_api()  # as the kernel's probe does before anything compiles

    def uses_the_api(x: torch.Tensor) -> torch.Tensor:
        api = attention._varlen_api()
        return x * 2 if api is not None and api.scale else x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = torch.compile(uses_the_api, backend="eager", fullgraph=True)(torch.ones(3))
    assert [str(w.message) for w in caught if "dynamo" in str(w.message).lower()] == []
    torch.testing.assert_close(out, torch.ones(3) * (2 if eager is not None and eager.scale else 1))


def test_per_example_path_soft_caps_and_slides_like_the_dense_reference() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, 30, 8), torch.randn(1, 2, 30, 8), torch.randn(1, 2, 30, 8)
    lengths, scale, softcap, window = [12, 18], 0.35, 5.0, 6
    got = per_example_attention(q, k, v, lengths, scale=scale, softcap=softcap, window=window)
    # Reference: one dense block-diagonal, causal, windowed mask over the whole row.
    doc = torch.repeat_interleave(torch.arange(2), torch.tensor(lengths))
    index = torch.arange(30)
    allowed = (doc[:, None] == doc[None, :]) & (index[:, None] >= index[None, :])
    allowed &= (index[:, None] - index[None, :]) < window
    kr, vr = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = torch.tanh(q @ kr.transpose(-1, -2) * scale / softcap) * softcap
    weights = functional.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    torch.testing.assert_close(got, (weights @ vr).transpose(1, 2), atol=1e-6, rtol=0)


SHAPE = AttentionShape(heads=4, kv_heads=2, head_dim=16)


def test_on_a_cpu_auto_chooses_per_example_sdpa_and_says_why() -> None:
    choice = choose_attention(AttentionKernel.AUTO, shape=SHAPE, device=torch.device("cpu"), dtype=torch.float32)
    assert choice.kernel is AttentionKernel.SDPA
    assert not choice.fell_back
    message = choice.message()
    assert "attention: sdpa (per example)" in message
    assert "CUDA" in message
    assert "flex" in message


def test_a_kernel_the_device_cannot_run_falls_back_with_the_reason() -> None:
    choice = choose_attention(AttentionKernel.VARLEN, shape=SHAPE, device=torch.device("cpu"), dtype=torch.float32)
    assert choice.fell_back
    assert choice.kernel is AttentionKernel.SDPA
    assert [kernel for kernel, _ in choice.passed_over] == [AttentionKernel.VARLEN, AttentionKernel.FLEX]
    assert "template asked varlen" in choice.message()


def test_a_kernel_whose_probe_fails_or_differs_falls_back_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "unavailable", lambda kernel, **_: None)  # as if on a GPU with both kernels
    verdicts = {
        AttentionKernel.VARLEN: "failed on this device (RuntimeError: no kernel image)",
        AttentionKernel.FLEX: None,
    }
    choice = choose_attention(
        AttentionKernel.AUTO, shape=SHAPE, device=torch.device("cpu"), dtype=torch.bfloat16, probe=verdicts.__getitem__
    )
    assert choice.kernel is AttentionKernel.FLEX
    assert "no kernel image" in choice.message()
    assert not choice.fell_back  # auto has no choice to honour


def test_models_the_fast_kernels_cannot_serve_are_named() -> None:
    cuda = torch.device("cuda")
    gemma2 = AttentionShape(heads=8, kv_heads=4, head_dim=256, sliding_window=True, softcap=True)
    assert "soft-caps" in str(
        attention.unavailable(AttentionKernel.FLEX, shape=gemma2, device=cuda, dtype=torch.bfloat16)
    )
    if attention._varlen_api() is not None:
        reason = attention.unavailable(AttentionKernel.VARLEN, shape=gemma2, device=cuda, dtype=torch.bfloat16)
        assert "soft-caps" in str(reason)
        fp32 = attention.unavailable(AttentionKernel.VARLEN, shape=SHAPE, device=cuda, dtype=torch.float32)
        assert "bf16 or fp16" in str(fp32)
