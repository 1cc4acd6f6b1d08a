"""The loop's loss computes the output head only before labelled tokens, and equals the full shifted loss."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoTokenizer

from kubetune_trainer.data.packing import collate_packed, collate_padded, label_positions, summed_token_loss
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.loss import summed_label_loss
from kubetune_trainer.training.setup import load_model

from .training_jobs import chat_lines, tokenized


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_label_positions_only_loss_equals_the_full_loss(
    tiny_models: dict[str, TinyModel], arch: str, packing: bool
) -> None:
    model_path = tiny_models[arch].snapshot_path
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    examples = tokenized(tokenizer, chat_lines(5, seed=8))
    batch = collate_packed(examples) if packing else collate_padded(examples, pad_token_id=tokenizer.pad_token_id)
    model = load_model(model_path, dtype=torch.float32)

    full = summed_token_loss(model(**batch.model_inputs()).logits, batch.labels)
    only_labels = summed_label_loss(model, batch)

    # Prompts are masked, so the head really skips positions.
    assert batch.label_tokens < batch.tokens
    torch.testing.assert_close(only_labels, full, rtol=1e-5, atol=1e-5)
    only_labels.backward()  # type: ignore[no-untyped-call]
    assert model.lm_head.weight.grad is not None


class _Recorded(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.operations: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.operations.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_micro_batch_s_loss_waits_for_no_count_from_the_device(tiny_llama: TinyModel) -> None:
    """The positions before labels are found on the host as the batch moves to its device, so the loss runs no
    `nonzero` (on a GPU its count is copied back: a sync in every micro-batch's forward)."""
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    host = collate_packed(tokenized(tokenizer, chat_lines(5, seed=8)))
    moved = host.to("cpu")
    assert torch.equal(moved.positions_before_labels(), label_positions(host.labels))
    model = load_model(tiny_llama.snapshot_path, dtype=torch.float32)

    with _Recorded() as recorded:
        loss = summed_label_loss(model, moved)
    assert not [name for name in recorded.operations if "nonzero" in name]
    torch.testing.assert_close(loss, summed_label_loss(model, host), rtol=0, atol=0)
