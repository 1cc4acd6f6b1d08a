"""Preference pairs to tokens and tensors, for trainingMethod dpo.

Each pair becomes two sequences, the input conversation followed by the preferred output and by
the non-preferred one, rendered with the model's chat template (tools included); only the output
message counts (its tokens are the labels, everything before it is -100). A sequence longer than
`maxSeqLength` is cut at the end, as in SFT, with a warning; a pair left with no output token on
either side is dropped and counted.

Pairs are never packed: a micro-batch is padded rows, chosen and rejected of pair i in rows 2i and
2i+1, so no token of one sequence attends to another and each sequence's log-probability is the
sum over its own row. A pair counts once in the loss: its `label_tokens` is 1, so the step's
divisor (the sum of `label_tokens`) is the number of pairs and the loss is the mean over pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .packing import ModelBatch, collate_padded
from .records import PreferenceRecord
from .tokenization import IGNORE_INDEX, TokenizedExample, tokenize_conversation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class TokenizedPair:
    """One preference pair: the preferred (chosen) and the non-preferred (rejected) sequence."""

    chosen: TokenizedExample
    rejected: TokenizedExample
    index: int
    """The pair's position among the file's usable pairs: where its reference log-probabilities are kept."""

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)

    @property
    def label_tokens(self) -> int:
        """1: the DPO loss is a mean over pairs (see the module docstring)."""
        return 1

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated


@dataclass
class TokenizedPairs:
    """A tokenized preference file and what the caller should warn about."""

    pairs: list[TokenizedPair] = field(default_factory=list)
    truncated: int = 0
    without_labels: int = 0
    approximate_spans: int = 0


def tokenize_pair(
    record: PreferenceRecord, tokenizer: PreTrainedTokenizerBase, *, max_seq_length: int, index: int
) -> TokenizedPair:
    """Both sequences of `record`, labels on the output only, cut to `max_seq_length`."""
    sides = []
    for output in (record.preferred_output[0], record.non_preferred_output[0]):
        ids, trained, approximate = tokenize_conversation(
            [*record.input.messages, output], tokenizer, tools=record.input.tools, train_on_inputs=False, only_last=True
        )
        truncated = len(ids) > max_seq_length
        ids, trained = ids[:max_seq_length], trained[:max_seq_length]
        labels = [token if keep else IGNORE_INDEX for token, keep in zip(ids, trained, strict=True)]
        if labels:
            labels[0] = IGNORE_INDEX
        sides.append(TokenizedExample(input_ids=ids, labels=labels, truncated=truncated, approximate_spans=approximate))
    return TokenizedPair(chosen=sides[0], rejected=sides[1], index=index)


def tokenize_pairs(
    records: Sequence[PreferenceRecord], tokenizer: PreTrainedTokenizerBase, *, max_seq_length: int
) -> TokenizedPairs:
    """Tokenize a preference file; pairs with no output token left on a side are dropped and counted."""
    dataset = TokenizedPairs()
    for record in records:
        pair = tokenize_pair(record, tokenizer, max_seq_length=max_seq_length, index=len(dataset.pairs))
        dataset.truncated += pair.truncated
        dataset.approximate_spans += pair.chosen.approximate_spans or pair.rejected.approximate_spans
        if pair.chosen.label_tokens == 0 or pair.rejected.label_tokens == 0:
            dataset.without_labels += 1
            continue
        dataset.pairs.append(pair)
    return dataset


@dataclass(frozen=True)
class PairBatch(ModelBatch):
    """Padded rows chosen_0, rejected_0, chosen_1, ...; `pair_indices` says which pairs."""

    pair_indices: tuple[int, ...] = ()


def collate_pairs(pairs: Sequence[TokenizedPair], *, pad_token_id: int) -> PairBatch:
    """Two padded rows per pair; `label_tokens` is the number of pairs (the DPO loss's unit)."""
    rows = collate_padded([side for pair in pairs for side in (pair.chosen, pair.rejected)], pad_token_id=pad_token_id)
    return PairBatch(
        input_ids=rows.input_ids,
        labels=rows.labels,
        position_ids=None,
        attention_mask=rows.attention_mask,
        examples=len(pairs),
        tokens=rows.tokens,
        label_tokens=len(pairs),
        pair_indices=tuple(pair.index for pair in pairs),
    )
