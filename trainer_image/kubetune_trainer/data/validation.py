"""Validate a training or validation file before any GPU time is spent, the way Together checks uploads.

Every problem is reported with its 1-based line (JSONL) or row (Parquet) number, and validation goes on
past the first one, so a user fixes a file in one round. `validate_file` only reports; `load_examples`
returns the parsed examples or raises `InvalidInput` naming the spec field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..contract import TrainingMethod
from ..errors import InvalidInput
from .conversation_rules import conversation_problems, preference_problems, uses_tools
from .readers import Row, read_jsonl, read_parquet
from .records import PREFERENCE_FORMATS, RECORD_TYPES, ROLES, DataFormat, Example, MessagesRecord, PreferenceRecord
from .report import GIB, DataError, DataLimits, DataReport

TRAINING_FIELD = "spec.trainingFile"
VALIDATION_FIELD = "spec.validationFile"
SUFFIXES = (".jsonl", ".parquet")
ERRORS_IN_EXCEPTION = 5


def validate_file(path: Path, *, limits: DataLimits | None = None, method: TrainingMethod | None = None) -> DataReport:
    """Check every line of `path`; the report holds the format, the example count and the errors.

    With `method`, a file whose format that method does not train (preference pairs for sft,
    supervised examples for dpo) is an error naming the method the file fits.
    """
    report, _ = _scan(path, limits=limits or DataLimits(), keep=False, method=method)
    return report


def load_examples(
    path: Path,
    *,
    field: str = TRAINING_FIELD,
    limits: DataLimits | None = None,
    method: TrainingMethod | None = None,
) -> list[Example]:
    """The validated examples of `path`, in file order.

    Raises `InvalidInput` (reason `InvalidTrainingData`, or `InvalidValidationData` for
    `spec.validationFile`) whose message lists the first errors with their line numbers.
    """
    report, examples = _scan(path, limits=limits or DataLimits(), keep=True, method=method)
    if report.ok:
        return examples
    raise invalid_data(report, field=field, path=path)


def invalid_data(report: DataReport, *, field: str, path: Path) -> InvalidInput:
    """The error for a file whose report has problems: the first few with their lines, and the fix."""
    shown = "; ".join(error.located(path.name) for error in report.errors[:ERRORS_IN_EXCEPTION])
    more = report.error_count - min(len(report.errors), ERRORS_IN_EXCEPTION)
    reason = "InvalidValidationData" if field == VALIDATION_FIELD else "InvalidTrainingData"
    return InvalidInput(
        f"{field}: {report.error_count} problem(s) in {path.name}: {shown}" + (f"; and {more} more" if more else ""),
        reason=reason,
        field=field,
        hint=f"Fix the lines named and upload the file again; `kubetune validate-data {path.name}` lists every "
        f"problem. Each line of {field} is one JSON object with `text`, `messages` or `prompt`+`completion` "
        "(trainingMethod sft), or `input`+`preferred_output`+`non_preferred_output` (trainingMethod dpo).",
    )


class _Collector:
    """Keeps the first `limit` errors and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[DataError] = []
        self.omitted = 0

    def add(self, error: DataError) -> None:
        if len(self.kept) < self.limit:
            self.kept.append(error)
        else:
            self.omitted += 1


def _scan(
    path: Path, *, limits: DataLimits, keep: bool, method: TrainingMethod | None = None
) -> tuple[DataReport, list[Example]]:
    errors = _Collector(limits.max_errors)
    examples: list[Example] = []
    file_format: DataFormat | None = None
    format_line = 0
    count = 0
    lines = 0
    tool_examples = 0

    def report() -> DataReport:
        return DataReport(
            path=str(path),
            format=file_format,
            examples=count,
            lines=lines,
            errors=errors.kept,
            errors_omitted=errors.omitted,
            tool_examples=tool_examples,
        )

    for problem in _file_problems(path, limits=limits):
        errors.add(problem)
    if errors.kept:
        return report(), examples

    for item in _rows(path, limits=limits):
        if isinstance(item, DataError):
            lines = max(lines, item.line or 0)
            errors.add(item)
            continue
        lines = item.line
        record_format = _detect_format(item, errors=errors)
        if record_format is None:
            continue
        if file_format is None:
            file_format, format_line = record_format, item.line
            mismatch = _method_mismatch(record_format, method)
            if mismatch is not None:
                errors.add(DataError(line=item.line, message=mismatch))
        elif record_format is not file_format:
            errors.add(
                DataError(
                    line=item.line,
                    message=f"a {record_format.value} example in a {file_format.value} file (format set by line "
                    f"{format_line}); a file holds one format",
                )
            )
            continue
        example = _parse(item, record_format, errors=errors)
        if example is not None:
            count += 1
            tool_examples += uses_tools([example])
            if keep:
                examples.append(example)

    if not errors.kept and count < limits.min_examples:
        errors.add(DataError(line=None, message=f"{count} example(s); at least {limits.min_examples} needed"))
    return report(), examples


def _file_problems(path: Path, *, limits: DataLimits) -> Iterator[DataError]:
    if not path.is_file():
        yield DataError(line=None, message="no such file")
        return
    if path.suffix.lower() not in SUFFIXES:
        yield DataError(
            line=None, message=f"unsupported file type `{path.suffix or path.name}`: use .jsonl or .parquet"
        )
        return
    size = path.stat().st_size
    if size == 0:
        yield DataError(line=None, message="the file is empty; it needs at least one example")
    elif size > limits.max_file_bytes:
        yield DataError(
            line=None,
            message=f"the file is {size / GIB:.2f} GiB, above the limit of {limits.max_file_bytes / GIB:.2f} GiB; "
            "split it or sample it",
        )


def _rows(path: Path, *, limits: DataLimits) -> Iterator[Row | DataError]:
    return read_parquet(path) if path.suffix.lower() == ".parquet" else read_jsonl(path, limits=limits)


def _method_mismatch(found: DataFormat, method: TrainingMethod | None) -> str | None:
    """The file's format against the job's trainingMethod: which method the file fits, when not this one."""
    if method is TrainingMethod.SFT and found in PREFERENCE_FORMATS:
        return (
            "preference pairs (`input`, `preferred_output`, `non_preferred_output`) fit trainingMethod dpo, and this "
            "job's trainingMethod is sft: set trainingMethod: dpo, or give `text`, `messages` or "
            "`prompt`+`completion` examples"
        )
    if method is TrainingMethod.DPO and found not in PREFERENCE_FORMATS:
        return (
            f"a {found.value} example fits trainingMethod sft, and this job's trainingMethod is dpo, which trains "
            "preference pairs: set trainingMethod: sft, or give `input`, `preferred_output` and "
            "`non_preferred_output` on every line"
        )
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _shown(value: Any) -> str:
    """A value as it looks in the user's JSON, shortened."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def _detect_format(row: Row, *, errors: _Collector) -> DataFormat | None:
    if not isinstance(row.value, dict):
        errors.add(DataError(line=row.line, message=f"expected a JSON object, got {_json_type(row.value)}"))
        return None
    keys = set(row.value)
    found = [fmt for fmt, record in RECORD_TYPES.items() if keys & set(record.fields)]
    if len(found) == 1:
        return found[0]
    if found:
        names = " and ".join(f"`{key}`" for key in sorted(keys) if any(key in RECORD_TYPES[f].fields for f in found))
        errors.add(
            DataError(
                line=row.line,
                message=f"mixes formats ({names}); a line holds exactly one of `text`, `messages`, "
                "`prompt`+`completion` or `input`+`preferred_output`+`non_preferred_output`",
            )
        )
        return None
    errors.add(DataError(line=row.line, message=_unknown_format_message(keys)))
    return None


def _unknown_format_message(keys: set[str]) -> str:
    if "input_ids" in keys:
        return (
            "pre-tokenized rows (`input_ids`) are not supported yet; give `text`, `messages` or `prompt`+`completion`"
        )
    found = ", ".join(f"`{key}`" for key in sorted(keys)) or "no fields"
    return (
        "no known format: expected `text`, `messages`, `prompt`+`completion` or "
        f"`input`+`preferred_output`+`non_preferred_output`, found {found}"
    )


def _parse(row: Row, record_format: DataFormat, *, errors: _Collector) -> Example | None:
    record_type = RECORD_TYPES[record_format]
    try:
        record = record_type.model_validate(row.value)
    except ValidationError as invalid:
        for detail in invalid.errors(include_url=False):
            errors.add(DataError(line=row.line, message=_field_message(detail, record_format)))
        return None
    if isinstance(record, MessagesRecord):
        problems = conversation_problems(record.messages, tools=record.tools, where="messages")
    elif isinstance(record, PreferenceRecord):
        problems = preference_problems(record)
    else:
        problems = []
    if problems:
        for problem in problems:
            errors.add(DataError(line=row.line, message=problem))
        return None
    return record


def _where(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _field_message(detail: ErrorDetails, record_format: DataFormat) -> str:
    where = _where(detail["loc"])
    given = detail.get("input")
    kind = detail["type"]
    if kind == "missing":
        return f"missing field `{where}`" + _fields_hint(detail["loc"], record_format)
    if kind == "extra_forbidden":
        return f"unknown field `{where}`" + _fields_hint(detail["loc"], record_format)
    if kind == "string_type":
        return f"`{where}` must be a string, got {_json_type(given)}"
    if kind == "list_type":
        return f"`{where}` must be an array of messages, got {_json_type(given)}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return f"`{where}` must be an object {_object_shape(where)}, got {_json_type(given)}"
    if kind in {"too_short", "too_long"}:
        return _length_message(where, too_short=kind == "too_short")
    if kind == "literal_error" and where.endswith(".type"):
        return f"`{where}` must be `function`, got {_shown(given)}"
    if where.endswith(".weight"):
        return f"`{where}` must be 0 or 1, got {_shown(given)}"
    if where.endswith(".role"):
        return f"`{where}` must be one of {', '.join(ROLES)}, got {_shown(given)}"
    return f"`{where}`: {detail['msg']}"


def _object_shape(where: str) -> str:
    if where == "input":
        return "with `messages`"
    if "tool" in where or "function" in where:
        return "in OpenAI's function-calling shape"
    return "with `role` and `content`"


def _length_message(where: str, *, too_short: bool) -> str:
    if where.endswith("_output"):
        count = "is empty" if too_short else "holds more than one message"
        return f"`{where}` {count}; it holds exactly one assistant message"
    return f"`{where}` is empty; a conversation needs a user message and an assistant message"


def _fields_hint(loc: tuple[int | str, ...], record_format: DataFormat) -> str:
    if len(loc) == 1:
        if record_format is DataFormat.MESSAGES:
            return "; a messages example has `messages` and optionally `tools`"
        fields = " and ".join(f"`{name}`" for name in RECORD_TYPES[record_format].fields)
        return f"; a {record_format.value} example has exactly {fields}"
    if loc[-2:-1] == ("function",) or "function" in loc:
        return "; a function call has `name` and `arguments`, a function definition `name`, `description`, `parameters`"
    if "tool_calls" in loc:
        return "; a tool call has `id`, `type` and `function`"
    if loc == ("input", loc[-1]):
        return "; `input` has `messages` and optionally `tools`"
    return (
        "; a message has `role`, `content` and optionally `weight`, `tool_calls` (assistant), `tool_call_id` "
        "(tool), `reasoning` or `reasoning_content` (assistant)"
    )
