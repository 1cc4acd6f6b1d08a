"""The data path on the tiny Llama, Qwen2 and Mistral models `kubetune tiny-model` writes: each model's
own tokenizer class (Qwen2's swaps the pre-tokenizer) masks the right spans, and packing stays exact."""

from __future__ import annotations

from itertools import groupby

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubetune_trainer.data import Example, Message, MessagesRecord, PromptCompletionRecord, TextRecord
from kubetune_trainer.data.packing import collate_packed, collate_padded, token_losses
from kubetune_trainer.data.tokenization import IGNORE_INDEX, tokenize_examples
from kubetune_trainer.tiny_model import ARCHES, TinyModel

CONVERSATION = MessagesRecord(
    messages=[
        Message(role="system", content="you are helpful"),
        Message(role="user", content="what is two plus two"),
        Message(role="assistant", content="four"),
        Message(role="user", content="tell me a joke"),
        Message(role="assistant", content="why did the chicken cross the road", weight=0),
        Message(role="user", content="why"),
        Message(role="assistant", content="to get to the other side"),
    ]
)
OTHERS: list[Example] = [
    TextRecord(text="the cat sat on the mat " * 4),
    PromptCompletionRecord(prompt="capital of france? ", completion="paris"),
]


@pytest.mark.parametrize("arch", ARCHES)
def test_each_architectures_tokenizer_masks_and_packs_exactly(arch: str, tiny_models: dict[str, TinyModel]) -> None:
    snapshot = tiny_models[arch].snapshot_path
    tokenizer = AutoTokenizer.from_pretrained(snapshot)
    dataset = tokenize_examples([CONVERSATION, *OTHERS], tokenizer, max_seq_length=256, train_on_inputs="auto")
    conversation = dataset.examples[0]
    pairs = zip(conversation.input_ids, conversation.labels, strict=True)
    runs = groupby(pairs, key=lambda pair: pair[1] != IGNORE_INDEX)
    spans = [[token for token, _ in run] for trained, run in runs if trained]
    assert [tokenizer.decode(span) for span in spans] == ["four<|im_end|>\n", "to get to the other side<|im_end|>\n"]
    assert dataset.approximate_spans == 0

    model = AutoModelForCausalLM.from_pretrained(snapshot, dtype=torch.float32)
    model.config.use_cache = False
    model.eval()  # type: ignore[no-untyped-call]
    packed = collate_packed(dataset.examples)
    with torch.no_grad():
        per_token = token_losses(model(**packed.model_inputs()).logits, packed.labels)[0]
        start = 0
        for example in dataset.examples:
            alone = collate_padded([example], pad_token_id=0)
            expected = token_losses(model(**alone.model_inputs()).logits, alone.labels)[0].sum()
            got = per_token[start : start + len(example)].sum()
            assert float(got / example.label_tokens) == pytest.approx(
                float(expected / example.label_tokens), abs=1e-5, rel=0
            )
            start += len(example)
