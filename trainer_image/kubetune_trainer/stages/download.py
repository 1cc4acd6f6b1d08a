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
from ..contract import TrainingMethod
from ..data import TRAINING_FIELD, VALIDATION_FIELD, load_examples
from ..data.chat_template import DEFAULT_CHAT_TEMPLATE, ensure_chat_template
from ..data.conversation_rules import uses_tools
from ..data.preference_pairs import TokenizedPair, TokenizedPairs, tokenize_pairs
from ..data.records import Example, PreferenceRecord
from ..data.sources import SourceSettings, fetch
from ..data.tokenization import TokenizedDataset, TokenizedExample, tokenize_examples
from ..data.tool_template import require_tool_template
from ..errors import InvalidInput
from ..hashing import file_sha256
from ..model_source import prepare_model
from ..storage import destination_for


def run(ctx: RunContext) -> None:
    config = ctx.config
    # A destination nobody can write to should fail now, not after hours of training.
    destination_for(config.output.uri, pvc_mount_root=config.data.pvc_mount_root)
    ctx.paths.root.mkdir(parents=True, exist_ok=True)
    with _machine_lock(ctx.paths.root / ".download.lock"):
        _download_model(ctx)
        _download_data(ctx)
    _tokenize(ctx)


def _download_model(ctx: RunContext) -> None:
    config = ctx.config
    prepared = prepare_model(
        config.model,
        cache_dir=Path(config.runtime.cache_dir),
        environ=ctx.environ,
        merge_dir=ctx.paths.merged_base,
    )
    ctx.model_path = prepared.path
    ctx.revision_sha = prepared.revision_sha
    ctx.adapter_lineage = prepared.lineage
    facts = prepared.facts
    if facts.revision_sha is None:
        facts = facts.model_copy(update={"revision_sha": prepared.revision_sha})
    ctx.model_facts = facts
    ctx.max_seq_length, warnings = compat.with_sequence_cap(
        config.hyperparameters.max_seq_length, facts, list(prepared.warnings)
    )
    for note in warnings:
        ctx.warn(note.reason, note.message)
    source = f"{config.model.repo}@{prepared.revision_sha[:12]}"
    if prepared.lineage is not None:
        lineage = prepared.lineage
        source += f" (LoRA adapter merged into {lineage.base_repo}@{lineage.base_sha[:12]})"
    ctx.reporter.note(f"model {source}: {compat.human_count(facts.parameters)} parameters")


def _download_data(ctx: RunContext) -> None:
    config = ctx.config
    settings = SourceSettings.from_config(config)
    ctx.training_file_path = fetch(
        config.data.training_file,
        field=TRAINING_FIELD,
        dest_dir=ctx.paths.data,
        settings=settings,
        environ=ctx.environ,
    )
    ctx.training_file_sha256 = file_sha256(ctx.training_file_path)
    if config.data.validation_file is not None:
        ctx.validation_file_path = fetch(
            config.data.validation_file,
            field=VALIDATION_FIELD,
            dest_dir=ctx.paths.data,
            settings=settings,
            environ=ctx.environ,
        )
        ctx.validation_file_sha256 = file_sha256(ctx.validation_file_path)


def _tokenize(ctx: RunContext) -> None:
    assert ctx.model_path is not None
    assert ctx.training_file_path is not None
    assert ctx.max_seq_length is not None
    # From the local snapshot, never the repo id: a repo id would probe the network.
    tokenizer = AutoTokenizer.from_pretrained(str(ctx.model_path))
    ctx.default_chat_template = ensure_chat_template(tokenizer)
    if ctx.default_chat_template:
        ctx.warn(
            "DefaultChatTemplate",
            "the model's tokenizer has no chat template; conversations are rendered with ChatML "
            "(<|im_start|>role ... <|im_end|>), which is saved with the trained model",
        )
    ctx.tokenizer = tokenizer
    method = ctx.config.hyperparameters.training_method
    training = load_examples(ctx.training_file_path, field=TRAINING_FIELD, method=method)
    validation = (
        load_examples(ctx.validation_file_path, field=VALIDATION_FIELD, method=method)
        if ctx.validation_file_path is not None
        else []
    )
    if uses_tools(training) or uses_tools(validation):
        default = " (kubetune's default ChatML: the model's tokenizer has none)" if ctx.default_chat_template else ""
        require_tool_template(
            tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE, source=f"{ctx.config.model.repo}{default}"
        )
    ctx.train_examples = _tokenized(ctx, training, tokenizer=tokenizer, field=TRAINING_FIELD)
    ctx.validation_examples = _tokenized(ctx, validation, tokenizer=tokenizer, field=VALIDATION_FIELD)
    if not ctx.train_examples:
        raise InvalidInput(
            f"{TRAINING_FIELD}: no example has a token to train on after masking and truncation",
            reason="NothingToTrain",
            field=TRAINING_FIELD,
            hint="Add assistant messages or completions, or set hyperparameters.trainOnInputs: true.",
        )
    tokens = sum(len(example) for example in ctx.train_examples)
    ctx.training_tokens = tokens
    ctx.reporter.note(f"data: {len(ctx.train_examples)} training examples, {tokens:,} tokens")


def _tokenized(
    ctx: RunContext, examples: list[Example], *, tokenizer: PreTrainedTokenizerBase, field: str
) -> list[TokenizedExample] | list[TokenizedPair]:
    """Token ids and labels: sequences for sft, (chosen, rejected) pairs for dpo."""
    assert ctx.max_seq_length is not None
    if ctx.config.hyperparameters.training_method is TrainingMethod.DPO:
        pairs = tokenize_pairs(
            [example for example in examples if isinstance(example, PreferenceRecord)],
            tokenizer,
            max_seq_length=ctx.max_seq_length,
        )
        _warn_about(ctx, pairs, field=field)
        return list(pairs.pairs)
    dataset = tokenize_examples(
        examples,
        tokenizer,
        max_seq_length=ctx.max_seq_length,
        train_on_inputs=ctx.config.hyperparameters.train_on_inputs,
    )
    _warn_about(ctx, dataset, field=field)
    return list(dataset.examples)


def _warn_about(ctx: RunContext, dataset: TokenizedDataset | TokenizedPairs, *, field: str) -> None:
    if dataset.truncated:
        ctx.warn(
            "ExamplesTruncated",
            f"{field}: {dataset.truncated} example(s) are longer than {ctx.max_seq_length} tokens and were cut; "
            "their ends are not trained",
        )
    if dataset.without_labels:
        what = (
            "pair(s) lost an output to maxSeqLength"
            if isinstance(dataset, TokenizedPairs)
            else "example(s) have no token in the loss"
        )
        ctx.warn("ExamplesWithoutLabels", f"{field}: {dataset.without_labels} {what} and were dropped")


@contextmanager
def _machine_lock(path: Path) -> Iterator[None]:
    """One process of this machine at a time (torchrun's ranks share the cache and the work directory)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
