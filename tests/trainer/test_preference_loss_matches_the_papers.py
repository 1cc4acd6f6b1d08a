"""The DPO loss, RPO's NLL term, SimPO and reference-free DPO equal the papers' formulas, gradients too.

The reference implementation below is written from the papers, one pair at a time, with each
sequence's log-probability summed token by token from a plain softmax; the trainer's
(`training.preference_loss`) works on padded micro-batches of pairs. On a tiny random Llama, the
losses and every parameter's gradient agree within 1e-5. For LoRA, the reference the trainer
takes by disabling the adapter equals a separately held copy of the base model.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from kubetune_trainer.contract import DpoSettings, LoraConfig
from kubetune_trainer.data.preference_pairs import TokenizedPair, collate_pairs
from kubetune_trainer.data.tokenization import IGNORE_INDEX, TokenizedExample
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.preference_loss import (
    AdapterDisabledReference,
    NoReference,
    PrecomputedReference,
    PreferenceLoss,
    sequence_logps,
)

# Real (tiny, random) transformers models built in this process: integration, not unit.
pytestmark = pytest.mark.integration

VOCAB = 64
TOLERANCE = 1e-5


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        use_cache=False,
    )
    model = LlamaForCausalLM(config).double()
    model.config.use_cache = False
    return model


def side(prompt: list[int], output: list[int]) -> TokenizedExample:
    ids = prompt + output
    return TokenizedExample(input_ids=ids, labels=[IGNORE_INDEX] * len(prompt) + output)


def random_pairs(count: int, *, seed: int) -> list[TokenizedPair]:
    generator = torch.Generator().manual_seed(seed)

    def tokens(low: int, high: int) -> list[int]:
        length = int(torch.randint(low, high, (1,), generator=generator))
        return [int(t) for t in torch.randint(1, VOCAB, (length,), generator=generator)]

    pairs = []
    for index in range(count):
        prompt = tokens(2, 9)
        pairs.append(TokenizedPair(chosen=side(prompt, tokens(1, 8)), rejected=side(prompt, tokens(1, 8)), index=index))
    return pairs


def paper_logp(model: nn.Module, example: TokenizedExample) -> tuple[torch.Tensor, int]:
    """log pi(y|x) = sum over the output's tokens t of log softmax(logits at t-1)[y_t], one sequence alone."""
    logits = model(input_ids=torch.tensor([example.input_ids])).logits[0]
    total = torch.zeros((), dtype=logits.dtype)
    count = 0
    for position in range(1, len(example.input_ids)):
        label = example.labels[position]
        if label == IGNORE_INDEX:
            continue
        row = logits[position - 1]
        total = total + row[label] - torch.logsumexp(row, dim=0)
        count += 1
    return total, count


def paper_loss(
    model: nn.Module, reference: nn.Module | None, pairs: list[TokenizedPair], s: DpoSettings
) -> torch.Tensor:
    """Mean over pairs of the papers' losses.

    DPO (Rafailov et al. 2023, eq. 7): -log sigma(beta log(pi(y_w)/ref(y_w)) - beta log(pi(y_l)/ref(y_l))).
    SimPO (Meng et al. 2024, eq. 6): -log sigma(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma).
    RPO (Pang et al. 2024, eq. 1): the DPO term plus alpha * (-log pi(y_w) / |y_w|).
    """
    losses = []
    simpo = s.simpo_gamma > 0
    for pair in pairs:
        w, n_w = paper_logp(model, pair.chosen)
        lose, n_l = paper_logp(model, pair.rejected)
        if reference is None or s.reference_free or simpo:
            ref_w = ref_l = torch.zeros((), dtype=w.dtype)
        else:
            with torch.no_grad():
                ref_w, _ = paper_logp(reference, pair.chosen)
                ref_l, _ = paper_logp(reference, pair.rejected)
        if simpo or s.normalize_logratios_by_length:
            z = s.beta * ((w - ref_w) / n_w - (lose - ref_l) / n_l) - s.simpo_gamma
        else:
            z = s.beta * ((w - ref_w) - (lose - ref_l))
        loss = -torch.log(torch.sigmoid(z))
        if s.rpo_alpha > 0:
            loss = loss + s.rpo_alpha * (-w / n_w)
        losses.append(loss)
    return torch.stack(losses).mean()


def reference_table(reference: nn.Module, pairs: list[TokenizedPair]) -> torch.Tensor:
    with torch.no_grad():
        return torch.tensor(
            [[paper_logp(reference, p.chosen)[0].item(), paper_logp(reference, p.rejected)[0].item()] for p in pairs],
            dtype=torch.float64,
        )


def trainer_loss(model: nn.Module, loss: PreferenceLoss, pairs: list[TokenizedPair], *, micro: int) -> torch.Tensor:
    """As a training step computes it: summed pair losses per micro-batch over the step's pairs."""
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(pairs), micro):
        batch = collate_pairs(pairs[start : start + micro], pad_token_id=0).to("cpu")  # moved, as the loop does
        total = total + loss(model, batch) / len(pairs)
    return total


def gradients(model: nn.Module, value: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    value.backward()  # type: ignore[no-untyped-call]
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


VARIANTS = {
    "dpo": DpoSettings(beta=0.1),
    "dpo_beta_0.5": DpoSettings(beta=0.5),
    "rpo": DpoSettings(beta=0.1, rpo_alpha=0.7),
    "simpo": DpoSettings(beta=2.0, simpo_gamma=0.5),
    "reference_free": DpoSettings(beta=0.1, reference_free=True),
    "length_normalised": DpoSettings(beta=0.3, normalize_logratios_by_length=True),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_loss_and_gradients_equal_the_papers_formulas(name: str) -> None:
    settings = VARIANTS[name]
    policy = tiny_llama()
    reference = copy.deepcopy(policy)
    # Move the policy away from the reference, so the log-ratios are not all zero.
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pairs = random_pairs(6, seed=3)
    free = settings.reference_free or settings.simpo_gamma > 0
    source = NoReference() if free else PrecomputedReference(reference_table(reference, pairs))

    expected = paper_loss(policy, reference, pairs, settings)
    expected_grads = gradients(policy, expected)
    actual = trainer_loss(policy, PreferenceLoss(settings=settings, reference=source), pairs, micro=4)
    actual_grads = gradients(policy, actual)

    assert math.isclose(float(actual.detach()), float(expected.detach()), abs_tol=TOLERANCE), (actual, expected)
    assert expected_grads.keys() == actual_grads.keys()
    worst = max(float((actual_grads[k] - expected_grads[k]).abs().max()) for k in expected_grads)
    assert worst < TOLERANCE, worst


def test_the_lora_reference_is_the_base_model_with_the_adapter_disabled() -> None:
    base = tiny_llama()
    frozen_copy = copy.deepcopy(base)
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
    # A trained adapter: give it non-zero weights so the adapted model differs from the base.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    pairs = random_pairs(5, seed=4)
    batch = collate_pairs(pairs, pad_token_id=0)
    from_adapter_off = AdapterDisabledReference().logps(model, batch)
    from_copy = reference_table(frozen_copy, pairs)
    assert torch.allclose(from_adapter_off.double(), from_copy, atol=TOLERANCE)
    # And the adapter is back on afterwards: the policy's own log-probabilities differ from the base's.
    policy = torch.tensor([[paper_logp(model, p.chosen)[0].item(), 0.0] for p in pairs], dtype=torch.float64)
    assert not torch.allclose(policy[:, 0], from_copy[:, 0], atol=1e-3)

    settings = DpoSettings(beta=0.1)
    expected = paper_loss(model, frozen_copy, pairs, settings)
    expected_grads = gradients(model, expected)
    loss = PreferenceLoss(settings=settings, reference=AdapterDisabledReference())
    actual = trainer_loss(model, loss, pairs, micro=2)
    actual_grads = gradients(model, actual)
    assert math.isclose(float(actual.detach()), float(expected.detach()), abs_tol=TOLERANCE)
    assert max(float((actual_grads[k] - expected_grads[k]).abs().max()) for k in expected_grads) < TOLERANCE


def test_reward_metrics_are_the_means_over_pairs() -> None:
    policy = tiny_llama()
    pairs = random_pairs(4, seed=5)
    loss = PreferenceLoss(settings=DpoSettings(beta=0.1, reference_free=True), reference=NoReference())
    with torch.no_grad():
        loss(policy, collate_pairs(pairs[:2], pad_token_id=0))
        loss(policy, collate_pairs(pairs[2:], pad_token_id=0))
    metrics = loss.step_metrics()
    assert metrics is not None
    logps = reference_table(policy, pairs)
    margins = 0.1 * (logps[:, 0] - logps[:, 1])
    assert math.isclose(metrics.chosen_logps, float(logps[:, 0].mean()), abs_tol=1e-6)
    assert math.isclose(metrics.rejected_logps, float(logps[:, 1].mean()), abs_tol=1e-6)
    assert math.isclose(metrics.reward_margin, float(margins.mean()), abs_tol=1e-6)
    assert metrics.reward_accuracy == float((margins > 0).double().mean())
    assert loss.step_metrics() is None  # taken: the next step starts from zero


def test_sequence_logps_by_chunks_equal_the_whole_rows_and_keep_one_chunk_of_logits() -> None:
    """A DPO micro-batch's log-probabilities through chunks of 2 positions (all rows) equal one
    whole pass, forward and gradients, and backward keeps no vocabulary-wide tensor of more than a chunk."""
    policy = tiny_llama()
    batch = collate_pairs(random_pairs(4, seed=11), pad_token_id=0)
    rows = batch.input_ids.shape[0]
    weights = torch.linspace(-1.0, 2.0, rows, dtype=torch.float64)  # a pair loss weighs rows unequally

    def run(chunk_tokens: int | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], int]:
        logit_rows = [0]

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            # The model computes in float64; its logits are upcast to float32 (the MLP is also 64 wide).
            if tensor.dtype is torch.float32 and tensor.dim() and tensor.shape[-1] == VOCAB:
                logit_rows.append(tensor.numel() // VOCAB)
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            logps, lengths = sequence_logps(policy, batch, chunk_tokens=chunk_tokens)
        return logps, lengths, gradients(policy, (logps * weights).sum()), max(logit_rows)

    whole, whole_lengths, whole_grads, whole_kept = run(None)
    chunk = 2 * rows
    chunked, chunked_lengths, chunked_grads, chunked_kept = run(chunk)

    assert torch.equal(chunked_lengths, whole_lengths)
    assert int(whole_lengths.max()) > 2 * 2  # really several chunks of 2 positions
    # The logits are float32 (as the trainer upcasts them): sums in another order differ at its precision.
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=0)
    assert chunked_grads.keys() == whole_grads.keys()
    for name, gradient in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], gradient, rtol=1e-5, atol=1e-7)
    # One pass keeps every scored position's logits for backward; chunks keep none (recomputed).
    assert whole_kept >= int(whole_lengths.max())
    assert chunked_kept <= chunk


def test_a_moved_pair_batch_keeps_its_pairs_and_the_positions_found_on_the_host() -> None:
    batch = collate_pairs(random_pairs(3, seed=5), pad_token_id=0)
    moved = batch.to("cpu")
    assert type(moved) is type(batch)
    assert moved.pair_indices == batch.pair_indices
    assert moved.before_labels is not None
    assert torch.equal(moved.before_labels, batch.positions_before_labels())
    assert torch.equal(moved.input_ids, batch.input_ids)
    assert torch.equal(moved.attention_mask, batch.attention_mask)
