"""Packing is exact: a packed micro-batch gives every example the loss it has alone (fp32, 1e-5).

The model is a tiny random Llama built here, run with `use_cache=False`: transformers 5 isolates
packed sequences (position_ids restarting at 0) only without a KV cache, in eager and sdpa attention
alike. The last test shows what happens with the cache on, so this test would catch a regression.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from kubetune_trainer.data import load_examples
from kubetune_trainer.data.batching import plan_epoch
from kubetune_trainer.data.packing import collate_packed, collate_padded, summed_token_loss, token_losses
from kubetune_trainer.data.records import Message, MessagesRecord, PromptCompletionRecord, TextRecord
from kubetune_trainer.data.tokenization import TokenizedExample, tokenize_examples

from ..conftest import REPO
from .bpe_tokenizer import build_tokenizer

GOOD = REPO / "tests" / "data" / "good_data"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="module")
def examples(tokenizer: PreTrainedTokenizerFast) -> list[TokenizedExample]:
    records = [
        *load_examples(GOOD / "messages.jsonl"),
        *load_examples(GOOD / "prompt_completion.jsonl"),
        *load_examples(GOOD / "text.jsonl"),
        TextRecord(text="the dog sat on the mat " * 6),
        PromptCompletionRecord(prompt="what is two plus two? " * 3, completion="four"),
        MessagesRecord(
            messages=[Message(role="user", content="hello " * 9), Message(role="assistant", content="world " * 5)]
        ),
    ]
    dataset = tokenize_examples(records, tokenizer, max_seq_length=128, train_on_inputs="auto")
    assert len(dataset.examples) == len(records)
    return dataset.examples


def tiny_llama(vocab_size: int, *, attention: str, use_cache: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        attn_implementation=attention,  # type: ignore[call-arg]
        use_cache=use_cache,
    )
    model = LlamaForCausalLM(config)
    assert model.dtype == torch.float32
    model.eval()  # type: ignore[no-untyped-call]
    return model


def alone_losses(model: LlamaForCausalLM, examples: list[TokenizedExample]) -> list[float]:
    losses = []
    for example in examples:
        batch = collate_padded([example], pad_token_id=0)
        with torch.no_grad():
            logits = model(**batch.model_inputs()).logits
        losses.append(float(summed_token_loss(logits, batch.labels)) / example.label_tokens)
    return losses


def packed_losses(model: LlamaForCausalLM, examples: list[TokenizedExample]) -> list[float]:
    batch = collate_packed(examples)
    with torch.no_grad():
        per_token = token_losses(model(**batch.model_inputs()).logits, batch.labels)[0]
    losses, start = [], 0
    for example in examples:
        losses.append(float(per_token[start : start + len(example)].sum()) / example.label_tokens)
        start += len(example)
    return losses


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_and_unpacked_losses_agree_per_example(
    tokenizer: PreTrainedTokenizerFast, examples: list[TokenizedExample], attention: str
) -> None:
    model = tiny_llama(len(tokenizer), attention=attention)
    packed = packed_losses(model, examples)
    alone = alone_losses(model, examples)
    assert packed == pytest.approx(alone, abs=TOLERANCE, rel=0)
    # The padded collate (packing: false) is exact too.
    padded = collate_padded(examples, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        per_token = token_losses(model(**padded.model_inputs()).logits, padded.labels)
    rows = [float(per_token[row].sum()) / example.label_tokens for row, example in enumerate(examples)]
    assert rows == pytest.approx(alone, abs=TOLERANCE, rel=0)


def test_packed_rows_restart_positions_and_never_predict_across_examples(examples: list[TokenizedExample]) -> None:
    batch = collate_packed(examples[:3])
    assert batch.position_ids is not None
    positions = batch.position_ids[0].tolist()
    starts = [0, len(examples[0]), len(examples[0]) + len(examples[1])]
    assert [positions[start] for start in starts] == [0, 0, 0]
    assert [int(batch.labels[0, start]) for start in starts] == [-100, -100, -100]
    assert batch.attention_mask is None
    assert (batch.tokens, batch.label_tokens) == (
        sum(len(e) for e in examples[:3]),
        sum(e.label_tokens for e in examples[:3]),
    )


def test_accumulating_micro_batches_gives_the_loss_of_the_whole_step(
    tokenizer: PreTrainedTokenizerFast, examples: list[TokenizedExample]
) -> None:
    model = tiny_llama(len(tokenizer), attention="sdpa")
    lengths = [len(example) for example in examples]
    whole = plan_epoch(lengths, examples_per_step=len(examples), token_budget=sum(lengths), seed=1, epoch=0)
    split = plan_epoch(lengths, examples_per_step=len(examples), token_budget=max(lengths), seed=1, epoch=0)
    (whole_step,), (split_step,) = whole.steps, split.steps
    assert len(whole_step.micro_batches) == 1
    assert len(split_step.micro_batches) > 2

    def step_loss(step_micro_batches: tuple[tuple[int, ...], ...], label_tokens: int) -> float:
        total = torch.zeros(())
        for micro_batch in step_micro_batches:
            batch = collate_packed([examples[index] for index in micro_batch])
            with torch.no_grad():
                total += summed_token_loss(model(**batch.model_inputs()).logits, batch.labels)
        return float(total) / label_tokens

    assert whole_step.label_tokens(examples) == split_step.label_tokens(examples)
    assert step_loss(split_step.micro_batches, split_step.label_tokens(examples)) == pytest.approx(
        step_loss(whole_step.micro_batches, whole_step.label_tokens(examples)), abs=TOLERANCE, rel=0
    )


def test_with_the_kv_cache_on_packed_examples_leak_into_each_other(
    tokenizer: PreTrainedTokenizerFast, examples: list[TokenizedExample]
) -> None:
    model = tiny_llama(len(tokenizer), attention="sdpa", use_cache=True)
    packed = packed_losses(model, examples)
    alone = alone_losses(model, examples)
    # The first example attends only to itself either way; the later ones see their predecessors.
    assert packed[0] == pytest.approx(alone[0], abs=TOLERANCE)
    assert max(abs(p - a) for p, a in zip(packed[1:], alone[1:], strict=True)) > 1e-3
