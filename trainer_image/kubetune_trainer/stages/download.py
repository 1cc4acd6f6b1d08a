"""DataDownload: the model (checked before any weight moves), the data files, validated and tokenized.

The model comes through `model_source.prepare_model`: the rules from config.json and the file
list refuse a model before its weights are fetched, and a LoRA adapter repo is merged into its
base, so the model trained is always a full model. The data files are fetched from their URIs,
validated line by line, and tokenized with the model's tokenizer (its chat template, or the
documented default) at the sequence length the model really allows.

Every rank runs this stage, one after another on a machine: they share the HF cache and the work
directory, and a merge or a download must not race with itself.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .. import compat
from ..context import RunContext
from ..contract import ModelFacts, TrainingMethod
from ..data import TRAINING_FIELD, VALIDATION_FIELD, load_examples
from ..data.chat_template import DEFAULT_CHAT_TEMPLATE, ensure_chat_template
from ..data.conversation_rules import uses_tools
from ..data.preference_pairs import TokenizedPair, TokenizedPairs, tokenize_pairs
from ..data.records import Example, PreferenceRecord
from ..data.sources import SourceSettings, fetch
from ..data.tokenization import TokenizedDataset, TokenizedExample, tokenize_examples
from ..data.tool_template import require_tool_template
from ..errors import InvalidInput
from ..handoffs import DownloadResult, FetchedFile, ModelSnapshot, PreferenceSplits, SupervisedSplits
from ..hashing import file_sha256
from ..model_source import prepare_model
from ..storage import destination_for


def run(ctx: RunContext) -> DownloadResult:
    config = ctx.config
    # A destination nobody can write to should fail now, not after hours of training.
    destination_for(config.output.uri, pvc_mount_root=config.data.pvc_mount_root)
    ctx.paths.root.mkdir(parents=True, exist_ok=True)
    with _machine_lock(ctx.paths.root / ".download.lock"):
        model, max_seq_length = _download_model(ctx)
        training_file, validation_file = _download_data(ctx)
    return _tokenize(
        ctx, model=model, training_file=training_file, validation_file=validation_file, max_seq_length=max_seq_length
    )


def _download_model(ctx: RunContext) -> tuple[ModelSnapshot, int]:
    """The model snapshot trained, and the sequence length it allows for this job."""
    config = ctx.config
    prepared = prepare_model(
        config.model,
        cache_dir=Path(config.runtime.cache_dir),
        environ=ctx.environ,
        merge_dir=ctx.paths.merged_base,
    )
    facts = prepared.facts
    if facts.revision_sha is None:
        facts = ModelFacts.model_validate({**facts.model_dump(), "revision_sha": prepared.revision_sha})
    ctx.journal.model = facts
    max_seq_length, warnings = compat.with_sequence_cap(
        config.hyperparameters.max_seq_length, facts, list(prepared.warnings)
    )
    for note in warnings:
        ctx.warn(note.reason, note.message)
    source = f"{config.model.repo}@{prepared.revision_sha[:12]}"
    if prepared.lineage is not None:
        lineage = prepared.lineage
        source += f" (LoRA adapter merged into {lineage.base_repo}@{lineage.base_sha[:12]})"
    ctx.reporter.note(f"model {source}: {compat.human_count(facts.parameters)} parameters")
    snapshot = ModelSnapshot(
        path=prepared.path, revision_sha=prepared.revision_sha, facts=facts, adapter_lineage=prepared.lineage
    )
    return snapshot, max_seq_length


def _download_data(ctx: RunContext) -> tuple[FetchedFile, FetchedFile | None]:
    config = ctx.config
    settings = SourceSettings.from_config(config)

    def fetched(uri: str, *, field: str) -> FetchedFile:
        path = fetch(uri, field=field, dest_dir=ctx.paths.data, settings=settings, environ=ctx.environ)
        return FetchedFile(path=path, sha256=file_sha256(path))

    training = fetched(config.data.training_file, field=TRAINING_FIELD)
    validation = config.data.validation_file
    return training, fetched(validation, field=VALIDATION_FIELD) if validation is not None else None


def _tokenize(
    ctx: RunContext,
    *,
    model: ModelSnapshot,
    training_file: FetchedFile,
    validation_file: FetchedFile | None,
    max_seq_length: int,
) -> DownloadResult:
    # From the local snapshot, never the repo id: a repo id would probe the network.
    tokenizer = AutoTokenizer.from_pretrained(str(model.path))
    default_chat_template = ensure_chat_template(tokenizer)
    if default_chat_template:
        ctx.warn(
            "DefaultChatTemplate",
            "the model's tokenizer has no chat template; conversations are rendered with ChatML "
            "(<|im_start|>role ... <|im_end|>), which is saved with the trained model",
        )
    method = ctx.config.hyperparameters.training_method
    training = load_examples(training_file.path, field=TRAINING_FIELD, method=method)
    validation = (
        load_examples(validation_file.path, field=VALIDATION_FIELD, method=method)
        if validation_file is not None
        else []
    )
    if uses_tools(training) or uses_tools(validation):
        default = " (kubetune's default ChatML: the model's tokenizer has none)" if default_chat_template else ""
        require_tool_template(
            tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE, source=f"{ctx.config.model.repo}{default}"
        )
    tokenize = _Tokenize(ctx, tokenizer=tokenizer, max_seq_length=max_seq_length)
    examples: SupervisedSplits | PreferenceSplits
    if method is TrainingMethod.DPO:
        examples = PreferenceSplits(
            train=tokenize.pairs(training, field=TRAINING_FIELD),
            validation=tokenize.pairs(validation, field=VALIDATION_FIELD),
        )
    else:
        examples = SupervisedSplits(
            train=tokenize.examples(training, field=TRAINING_FIELD),
            validation=tokenize.examples(validation, field=VALIDATION_FIELD),
        )
    if not examples.train:
        raise InvalidInput(
            f"{TRAINING_FIELD}: no example has a token to train on after masking and truncation",
            reason="NothingToTrain",
            field=TRAINING_FIELD,
            hint="Add assistant messages or completions, or set hyperparameters.trainOnInputs: true.",
        )
    tokens = sum(len(example) for example in examples.train)
    ctx.reporter.note(f"data: {len(examples.train)} training examples, {tokens:,} tokens")
    return DownloadResult(
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        tokenizer=tokenizer,
        default_chat_template=default_chat_template,
        max_seq_length=max_seq_length,
        examples=examples,
        training_tokens=tokens,
    )


class _Tokenize:
    """Token ids and labels at the job's sequence length: sequences for sft, (chosen, rejected) pairs for dpo."""

    def __init__(self, ctx: RunContext, *, tokenizer: PreTrainedTokenizerBase, max_seq_length: int) -> None:
        self._ctx = ctx
        self._tokenizer = tokenizer
        self._max_seq_length = max_seq_length

    def examples(self, examples: list[Example], *, field: str) -> tuple[TokenizedExample, ...]:
        dataset = tokenize_examples(
            examples,
            self._tokenizer,
            max_seq_length=self._max_seq_length,
            train_on_inputs=self._ctx.config.hyperparameters.train_on_inputs,
        )
        self._warn_about(dataset, field=field)
        return tuple(dataset.examples)

    def pairs(self, examples: list[Example], *, field: str) -> tuple[TokenizedPair, ...]:
        pairs = tokenize_pairs(
            [example for example in examples if isinstance(example, PreferenceRecord)],
            self._tokenizer,
            max_seq_length=self._max_seq_length,
        )
        self._warn_about(pairs, field=field)
        return tuple(pairs.pairs)

    def _warn_about(self, dataset: TokenizedDataset | TokenizedPairs, *, field: str) -> None:
        if dataset.truncated:
            self._ctx.warn(
                "ExamplesTruncated",
                f"{field}: {dataset.truncated} example(s) are longer than {self._max_seq_length} tokens and were cut; "
                "their ends are not trained",
            )
        if dataset.without_labels:
            what = (
                "pair(s) lost an output to maxSeqLength"
                if isinstance(dataset, TokenizedPairs)
                else "example(s) have no token in the loss"
            )
            self._ctx.warn("ExamplesWithoutLabels", f"{field}: {dataset.without_labels} {what} and were dropped")


@contextmanager
def _machine_lock(path: Path) -> Iterator[None]:
    """One process of this machine at a time (torchrun's ranks share the cache and the work directory)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
