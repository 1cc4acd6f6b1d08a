"""DataDownload's hand-off for a benchmark's model folder and examples: the benchmarks start at Initialization.

Imported by the benchmark processes after they put `trainer_image` on the path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from transformers import AutoTokenizer

from kubetune_trainer.data.tokenization import TokenizedExample
from kubetune_trainer.handoffs import DownloadResult, FetchedFile, ModelSnapshot, SupervisedSplits
from kubetune_trainer.model_rules import evaluate


def downloaded(model_dir: Path, *, repo: str, train: Sequence[TokenizedExample], max_seq_length: int) -> DownloadResult:
    """A `DownloadResult` as the stage builds it: the model's facts from its config.json, its own tokenizer."""
    revision = "0" * 40  # a folder written by the benchmark: no commit
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    files = [path.name for path in model_dir.iterdir()]
    facts = evaluate(config, files, repo=repo, revision_sha=revision, template=None).facts_or_raise()
    return DownloadResult(
        model=ModelSnapshot(path=model_dir, revision_sha=revision, facts=facts),
        training_file=FetchedFile(path=model_dir.parent / "unused.jsonl", sha256="0" * 64),
        validation_file=None,
        tokenizer=AutoTokenizer.from_pretrained(str(model_dir)),
        default_chat_template=False,
        max_seq_length=max_seq_length,
        examples=SupervisedSplits(train=tuple(train), validation=()),
        training_tokens=sum(len(example) for example in train),
    )
