"""The preference loss of trainingMethod dpo: DPO, with RPO's NLL term, SimPO and reference-free.

For a pair with preferred output y_w and non-preferred y_l after input x, with log-probabilities
summed over each output's tokens (`sequence_logps`), divided by the output's token count when
`normalize_logratios_by_length` (SimPO always), and the reference's log-probabilities taken as 0
when `reference_free` (SimPO always):

    margin = beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))) - gamma
    loss   = -log sigmoid(margin) + alpha * (-log pi(y_w|x) / |y_w|)

- DPO (Rafailov et al. 2023, eq. 7): gamma = 0, alpha = 0.
- SimPO (Meng et al. 2024, eq. 6): reference-free, length-normalised, target margin gamma > 0.
- RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization", eq. 1): alpha times the
  preferred output's NLL, per token (length-normalised), added to the DPO term.

The implicit rewards beta * (log pi - log ref) of each side give the metrics: reward accuracy (the
share of pairs whose preferred reward is higher) and reward margin (their mean difference).

The reference: for LoRA the same model with the adapter disabled (peft's `disable_adapter`), so no
second copy is held; for full fine-tuning the log-probabilities of the model as it starts, computed
in one pass before training (`training.reference_logps`) and kept with the checkpoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional

from ..contract import DpoSettings, PreferenceProgress
from ..data.packing import ModelBatch, to_device
from ..data.preference_pairs import PairBatch
from ..data.tokenization import IGNORE_INDEX
from ..memory_model import loss_chunk_tokens
from .distributed import all_reduce_sum
from .loss import OutputHead, causal_lm_of, last_hidden_states, sum_over_chunks


def sequence_logps(
    model: nn.Module, batch: ModelBatch, *, chunk_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `batch`: the summed log-probability of its label tokens (fp32), and how many there are.

    As in `training.loss`, the output head runs only at positions followed by a label in some row:
    a pair's input is masked, so most positions of a DPO row need no logits. Each kept position t
    scores the label at t + 1: log softmax, without materialising it, as the logit picked minus the
    log-sum-exp of the row. The head runs over chunks of positions (every row's at once, at most
    `chunk_tokens` positions in all: `memory_model.loss_chunk_tokens` of the vocabulary), each
    chunk recomputed in backward when there is more than one, so at most one chunk's fp32 logits
    exist at a time.
    """
    keep = batch.positions_before_labels()
    targets = batch.labels[:, keep + 1]
    lengths = (targets != IGNORE_INDEX).sum(dim=-1)
    causal_lm = causal_lm_of(model)
    if causal_lm is None:
        logits = model(**batch.model_inputs(), use_cache=False, logits_to_keep=keep).logits.float()
        return _row_logps(logits, targets), lengths
    hidden = last_hidden_states(model, causal_lm, batch)[:, keep]
    head = OutputHead.of(causal_lm)
    positions = max(1, (chunk_tokens or loss_chunk_tokens(head.vocab)) // max(hidden.shape[0], 1))
    return sum_over_chunks(_head_row_logps, head, hidden, targets, size=positions, dim=1), lengths


def _head_row_logps(head: OutputHead, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _row_logps(head.logits(hidden), targets)


def _row_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log softmax of `logits` (fp32) at `targets`, IGNORE_INDEX scoring nothing."""
    mask = targets != IGNORE_INDEX
    picked = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (picked * mask).sum(dim=-1)


@dataclass(frozen=True)
class PairTerms:
    """Per pair: the loss, and the implicit rewards of each side (detached)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def preference_terms(
    *,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    settings: DpoSettings,
) -> PairTerms:
    """The loss of each pair from summed log-probabilities (the module docstring's formula)."""
    simpo = settings.simpo_gamma > 0
    normalize = settings.normalize_logratios_by_length or simpo
    reference_free = settings.reference_free or simpo
    chosen, rejected = chosen_logps, rejected_logps
    ref_chosen, ref_rejected = reference_chosen, reference_rejected
    if normalize:
        chosen, rejected = chosen / chosen_lengths, rejected / rejected_lengths
        ref_chosen, ref_rejected = ref_chosen / chosen_lengths, ref_rejected / rejected_lengths
    if reference_free:
        ref_chosen, ref_rejected = torch.zeros_like(ref_chosen), torch.zeros_like(ref_rejected)
    chosen_rewards = settings.beta * (chosen - ref_chosen)
    rejected_rewards = settings.beta * (rejected - ref_rejected)
    losses = -functional.logsigmoid(chosen_rewards - rejected_rewards - settings.simpo_gamma)
    if settings.rpo_alpha > 0:
        losses = losses + settings.rpo_alpha * (-chosen_logps / chosen_lengths)
    return PairTerms(losses=losses, chosen_rewards=chosen_rewards.detach(), rejected_rewards=rejected_rewards.detach())


class Reference(Protocol):
    """Where a micro-batch's reference log-probabilities come from: rows (chosen, rejected) per pair."""

    def logps(self, model: nn.Module, batch: PairBatch) -> torch.Tensor: ...


class NoReference:
    """Reference-free (and SimPO): zeros, never read."""

    def logps(self, model: nn.Module, batch: PairBatch) -> torch.Tensor:
        return torch.zeros((len(batch.pair_indices), 2), device=batch.input_ids.device)


class AdapterDisabledReference:
    """LoRA: the base model is the reference; the adapter is switched off for one no-grad pass."""

    def logps(self, model: nn.Module, batch: PairBatch) -> torch.Tensor:
        with torch.no_grad(), adapter_disabled(model):
            summed, _ = sequence_logps(model, batch)
        return summed.view(-1, 2)


@dataclass
class PrecomputedReference:
    """Full fine-tuning: each pair's reference log-probabilities, computed before the first step."""

    table: torch.Tensor
    """Shape [pairs, 2]: (chosen, rejected) per pair index, fp64."""

    def logps(self, model: nn.Module, batch: PairBatch) -> torch.Tensor:
        rows = torch.tensor(batch.pair_indices, dtype=torch.long)
        return to_device(self.table[rows].float(), batch.input_ids.device)


@contextlib.contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[None]:
    """peft's `disable_adapter()` on the model inside any DDP wrapper."""
    inner = getattr(model, "module", model)
    disable = getattr(inner, "disable_adapter", None)
    if disable is None:
        raise TypeError("the adapter-disabled reference needs a peft (LoRA) model")
    with disable():
        yield


@dataclass
class _Tally:
    pairs: float = 0.0
    correct: float = 0.0
    margin: float = 0.0
    chosen_logps: float = 0.0
    rejected_logps: float = 0.0

    def tensor(self) -> torch.Tensor:
        return torch.tensor(
            [self.pairs, self.correct, self.margin, self.chosen_logps, self.rejected_logps], dtype=torch.float64
        )


@dataclass
class PreferenceLoss:
    """A micro-batch's summed pair losses (the step divides by its pairs), tallying the metrics."""

    settings: DpoSettings
    reference: Reference
    tally: _Tally = field(default_factory=_Tally)
    history: list[PreferenceProgress] = field(default_factory=list)
    """Every step's metrics, in order (what `step_metrics` returned)."""

    def __call__(self, model: nn.Module, batch: ModelBatch) -> torch.Tensor:
        if not isinstance(batch, PairBatch):
            raise TypeError("the preference loss takes micro-batches of pairs (data.preference_pairs.collate_pairs)")
        reference = self.reference.logps(model, batch)
        summed, lengths = sequence_logps(model, batch)
        pairs, pair_lengths = summed.view(-1, 2), lengths.view(-1, 2).clamp(min=1)
        terms = preference_terms(
            chosen_logps=pairs[:, 0],
            rejected_logps=pairs[:, 1],
            chosen_lengths=pair_lengths[:, 0],
            rejected_lengths=pair_lengths[:, 1],
            reference_chosen=reference[:, 0],
            reference_rejected=reference[:, 1],
            settings=self.settings,
        )
        self._count(terms, pairs.detach())
        return terms.losses.sum()

    def _count(self, terms: PairTerms, logps: torch.Tensor) -> None:
        tally = self.tally
        tally.pairs += logps.shape[0]
        tally.correct += float((terms.chosen_rewards > terms.rejected_rewards).sum())
        tally.margin += float((terms.chosen_rewards - terms.rejected_rewards).sum())
        tally.chosen_logps += float(logps[:, 0].sum())
        tally.rejected_logps += float(logps[:, 1].sum())

    def step_metrics(self) -> PreferenceProgress | None:
        """The metrics of the micro-batches since the last call, over every rank; then start over."""
        totals = all_reduce_sum(self.tally.tensor())
        self.tally = _Tally()
        pairs = float(totals[0])
        if pairs == 0:
            return None
        metrics = PreferenceProgress(
            reward_accuracy=float(totals[1]) / pairs,
            reward_margin=float(totals[2]) / pairs,
            chosen_logps=float(totals[3]) / pairs,
            rejected_logps=float(totals[4]) / pairs,
        )
        self.history.append(metrics)
        return metrics
