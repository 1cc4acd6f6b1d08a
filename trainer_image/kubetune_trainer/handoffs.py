"""What each stage hands to the next: one frozen, typed value per stage, threaded by the pipeline.

    download(ctx)                                      -> DownloadResult
    initialize(ctx, downloaded)                        -> InitializedRun
    train(ctx, downloaded, initialized)                -> TrainingOutcome
    save(ctx, downloaded, initialized, trained)        -> SavedModel | None   (None: not rank 0)
    upload(ctx, saved)                                 -> OutputSummary | None (None: not rank 0)

A stage takes the hand-offs of the stages before it as parameters and returns its own, so a
stage cannot read what an earlier stage has not produced: mypy (strict) checks every call in
`pipeline.py`. None of these values leaves the process; what crosses the boundary to the
operator (the model's facts, the output summary, the performance) is in the contract's pydantic
models, recorded in `RunContext.journal` for the Result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from transformers import PreTrainedTokenizerBase

from .adapter import AdapterLineage
from .contract import ModelFacts, TrainingPerformance
from .data.preference_pairs import TokenizedPair
from .data.tokenization import TokenizedExample
from .training.setup import TrainingSetup


@dataclass(frozen=True)
class ModelSnapshot:
    """The model actually trained, as a local snapshot: for a LoRA adapter repo, the merged base."""

    path: Path
    """A local directory (from_pretrained on a repo id would probe the network)."""
    revision_sha: str
    """The resolved commit of `model.repo`."""
    facts: ModelFacts
    """What config.json says, with `revision_sha` filled in."""
    adapter_lineage: AdapterLineage | None = None
    """Set when `model.repo` is a LoRA adapter repo, merged into its base at `path`."""


@dataclass(frozen=True)
class FetchedFile:
    """A data file as fetched from its URI, and its sha256 (for the model card)."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class SupervisedSplits:
    """Tokenized examples (trainingMethod sft): token ids with labels masked as trainOnInputs says."""

    train: Sequence[TokenizedExample]
    validation: Sequence[TokenizedExample]


@dataclass(frozen=True)
class PreferenceSplits:
    """Tokenized preference pairs (trainingMethod dpo): chosen and rejected sequences."""

    train: Sequence[TokenizedPair]
    validation: Sequence[TokenizedPair]


@dataclass(frozen=True)
class DownloadResult:
    """DataDownload's hand-off: the model snapshot, the data files, the tokenizer and the tokenized data."""

    model: ModelSnapshot
    training_file: FetchedFile
    validation_file: FetchedFile | None
    """None when the job names no validationFile."""
    tokenizer: PreTrainedTokenizerBase
    default_chat_template: bool
    """True when the model's tokenizer had no chat template and kubetune's ChatML was set on it."""
    max_seq_length: int
    """The sequence length really used: hyperparameters.maxSeqLength capped by what the model allows."""
    examples: SupervisedSplits | PreferenceSplits
    training_tokens: int
    """Tokens of the tokenized training examples, one epoch: the DataDownload record reports it."""


@dataclass(frozen=True)
class InitializedRun:
    """Initialization's hand-off: the model placed, LoRA-wrapped and wrapped for DDP/FSDP, and how."""

    model: nn.Module
    setup: TrainingSetup
    kernels: TrainingPerformance
    """The attention kernel, compilation and device the run got (Training adds what they achieved)."""


@dataclass(frozen=True)
class TrainingOutcome:
    """Training's hand-off: what the run trained, for the model card."""

    total_steps: int
    metrics: Mapping[str, float]
    """Losses as run (train loss, eval loss before and after), steps, tokens, tokens per second."""
    resumed_from_step: int | None
    """Step of the checkpoint training started from (this job's own, or fromCheckpoint's); None: step 0."""


@dataclass(frozen=True)
class SavedModel:
    """Saving's hand-off (rank 0): the verified output folder that Upload sends whole."""

    folder: Path
    name: str
