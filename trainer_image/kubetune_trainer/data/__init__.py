"""Training data: fetch, validate, tokenize with loss masks, pack and plan optimizer steps.

Importing this package pulls in no torch, httpx or cloud SDK, so the operator image (no ML stack)
can run `kubetune validate-data`. The modules, in the order a run uses them:

- `sources.fetch(uri, field=..., dest_dir=..., settings=..., environ=...)`: a local path for any data URI.
- `validation.validate_file(path, limits=...)` -> `DataReport`; `validation.load_examples(path, field=...)`
  -> the validated records, or `InvalidInput` naming the lines at fault.
- `tokenization.tokenize_example(example, tokenizer, max_seq_length=..., train_on_inputs=...)` ->
  `TokenizedExample(input_ids, labels)` with prompt tokens masked (-100) as trainOnInputs says.
- `batching.plan_epoch(lengths, examples_per_step=..., token_budget=..., seed=..., epoch=...)` -> the
  optimizer steps of one epoch, as micro-batches of example indices.
- `packing.collate_packed(examples)` / `packing.collate_padded(examples, pad_token_id=...)` -> model inputs.
"""

from __future__ import annotations

from .records import DataFormat, Example, Message, MessagesRecord, PromptCompletionRecord, TextRecord
from .report import DataError, DataLimits, DataReport
from .validation import TRAINING_FIELD, VALIDATION_FIELD, load_examples, validate_file

__all__ = [
    "TRAINING_FIELD",
    "VALIDATION_FIELD",
    "DataError",
    "DataFormat",
    "DataLimits",
    "DataReport",
    "Example",
    "Message",
    "MessagesRecord",
    "PromptCompletionRecord",
    "TextRecord",
    "load_examples",
    "validate_file",
]
