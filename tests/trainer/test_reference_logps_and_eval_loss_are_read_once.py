"""The reference pass of DPO and the evaluation pass keep what they sum on the device and read it once, and
their figures are what a pass per pair or per batch gives: the reference table row by row in the pairs' order,
the eval loss as the mean token loss over every batch."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import Precision
from kubetune_trainer.data.packing import collate_padded
from kubetune_trainer.data.preference_pairs import TokenizedPair, collate_pairs
from kubetune_trainer.data.tokenization import IGNORE_INDEX, TokenizedExample
from kubetune_trainer.training.evaluation import evaluate
from kubetune_trainer.training.loss import summed_label_loss
from kubetune_trainer.training.precision import plan_precision
from kubetune_trainer.training.preference_loss import sequence_logps
from kubetune_trainer.training.reference_logps import PAIRS_PER_PASS, compute_reference_logps

CPU = torch.device("cpu")
PAD = 0


class _HostCopies:
    """Counts `Tensor.cpu()` calls: each one, on a GPU, makes the host wait for the device."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = torch.Tensor.cpu

        def counted(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
            self.count += 1
            return original(tensor, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(torch.Tensor, "cpu", counted)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=97, use_cache=False,
    )  # fmt: skip
    model: torch.nn.Module = AutoModelForCausalLM.from_config(config)
    return model


def _example(rng: random.Random, length: int, prompt: int) -> TokenizedExample:
    ids = [rng.randrange(1, 97) for _ in range(length)]
    return TokenizedExample(input_ids=ids, labels=[IGNORE_INDEX] * prompt + ids[prompt:])


def test_the_reference_table_is_each_pair_s_log_probabilities_in_the_pairs_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(3)
    count = 2 * PAIRS_PER_PASS + 1  # three passes, the last one short
    pairs = [
        TokenizedPair(
            chosen=_example(rng, rng.randrange(6, 20), 3), rejected=_example(rng, rng.randrange(6, 20), 3), index=i
        )
        for i in range(count)
    ]
    model = _model()
    copies = _HostCopies(monkeypatch)
    table = compute_reference_logps(
        model, pairs, pad_token_id=PAD, precision=plan_precision(Precision.FP32, device=CPU), device=CPU,
        dist_info=DistInfo(),
    )  # fmt: skip
    assert copies.count == 1  # three passes, one copy to the host
    assert table.shape == (count, 2)
    assert table.dtype == torch.float64
    with torch.no_grad():
        one_by_one = torch.stack([sequence_logps(model, collate_pairs([pair], pad_token_id=PAD))[0] for pair in pairs])
    assert torch.allclose(table, one_by_one.double(), rtol=1e-5)
    assert model.training  # left as it was found


@pytest.mark.parametrize("batches", [1, 3])
def test_the_eval_loss_is_the_mean_token_loss_over_every_batch(batches: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    model = _model()
    rows = [
        collate_padded([_example(rng, rng.randrange(5, 16), 2) for _ in range(3)], pad_token_id=PAD)
        for _ in range(batches)
    ]
    copies = _HostCopies(monkeypatch)
    loss = evaluate(model, rows, precision=plan_precision(Precision.FP32, device=CPU), device=CPU)
    assert copies.count == 1
    with torch.no_grad():
        summed = sum(float(summed_label_loss(model, batch)) for batch in rows)
    assert loss == pytest.approx(summed / sum(batch.label_tokens for batch in rows), rel=1e-6)
