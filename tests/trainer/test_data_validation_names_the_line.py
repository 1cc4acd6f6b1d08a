"""Every malformed data file is refused with the line at fault and what is wrong with it.

The fixtures in tests/data/bad_data/ each hold one problem among good lines; the good lines must
stay clean, so the test also proves errors do not spill onto neighbouring lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from kubetune_trainer.data import (
    DataFormat,
    DataLimits,
    MessagesRecord,
    TextRecord,
    load_examples,
    validate_file,
)
from kubetune_trainer.errors import InvalidInput

from ..conftest import REPO

BAD = REPO / "tests" / "data" / "bad_data"
GOOD = REPO / "tests" / "data" / "good_data"

# file -> (line at fault or None for the whole file, text the message must contain)
MALFORMED = {
    "empty.jsonl": (None, "the file is empty"),
    "blank_line.jsonl": (2, "blank line"),
    "bad_json.jsonl": (3, "not valid JSON: Invalid control character at column 24"),
    "bad_utf8.jsonl": (2, "not valid UTF-8: byte 0xe9"),
    "not_an_object.jsonl": (2, "expected a JSON object, got an array"),
    "mixed_formats.jsonl": (2, "a messages example in a text file (format set by line 1); a file holds one format"),
    "two_formats_on_one_line.jsonl": (2, "mixes formats (`completion` and `prompt` and `text`)"),
    "unknown_column.jsonl": (3, "unknown field `source`; a text example has exactly `text`"),
    "unknown_format.jsonl": (
        1,
        "no known format: expected `text`, `messages`, `prompt`+`completion` or "
        "`input`+`preferred_output`+`non_preferred_output`, found `answer`",
    ),
    "text_not_a_string.jsonl": (2, "`text` must be a string, got a number"),
    "missing_completion.jsonl": (2, "missing field `completion`"),
    "unknown_role.jsonl": (2, '`messages[1].role` must be one of system, user, assistant, tool, got "bot"'),
    "no_assistant_message.jsonl": (3, "no assistant message"),
    "roles_do_not_alternate.jsonl": (2, "`messages[1]` is a user message after a user message; user and assistant"),
    "system_not_first.jsonl": (2, "`messages[2]` is a system message; only the first message may be one"),
    "weight_not_0_or_1.jsonl": (2, "`messages[1].weight` must be 0 or 1, got 2"),
    "weight_is_boolean.jsonl": (1, "`messages[1].weight` must be 0 or 1, got true"),
    "empty_messages.jsonl": (2, "`messages` is empty"),
    "messages_not_a_list.jsonl": (1, "`messages` must be an array of messages, got a string"),
    "message_not_an_object.jsonl": (2, "`messages[0]` must be an object with `role` and `content`, got a string"),
    "content_missing.jsonl": (2, "missing field `messages[1].content`"),
    "content_null.jsonl": (1, "`messages[0].content` must be a string, got null"),
    "unknown_message_field.jsonl": (1, "unknown field `messages[1].source`; a message has `role`, `content`"),
    "tool_without_call.jsonl": (1, "`messages[2]` is a tool message with no assistant `tool_calls` before it"),
    "tool_arguments_not_json.jsonl": (
        2,
        "`messages[1].tool_calls[0].function.arguments` is not valid JSON (Expecting value); write the arguments",
    ),
    "tool_result_matches_no_call.jsonl": (1, '`messages[2].tool_call_id` "call_9" matches no unanswered call'),
    "tool_call_unknown_function.jsonl": (
        3,
        '`messages[1].tool_calls[0].function.name` "get_time" is not one of the example\'s tools (get_weather)',
    ),
    "reasoning_on_user.jsonl": (1, "`messages[0].reasoning` is only allowed on an assistant message"),
    "preference_missing_output.jsonl": (2, "missing field `non_preferred_output`; a preference example has exactly"),
    "preference_empty_output.jsonl": (1, "`non_preferred_output[0].content` is empty"),
    "preference_identical_outputs.jsonl": (3, "`preferred_output` and `non_preferred_output` are identical"),
    "preference_input_ends_with_assistant.jsonl": (1, "`input.messages[1]` is an assistant message; the input ends"),
    "preference_output_not_assistant.jsonl": (2, '`preferred_output[0].role` must be assistant, got "user"'),
    "preference_two_outputs.jsonl": (1, "`preferred_output` holds more than one message"),
    "too_deeply_nested.jsonl": (2, "arrays and objects nested more than 64 deep"),
    "pretokenized.jsonl": (1, "pre-tokenized rows (`input_ids`) are not supported yet"),
    "nan_value.jsonl": (2, "not valid JSON: NaN is not valid JSON"),
    "wrong_extension.csv": (None, "unsupported file type `.csv`: use .jsonl or .parquet"),
}


def test_every_bad_fixture_is_in_the_table() -> None:
    assert sorted(path.name for path in BAD.iterdir()) == sorted(MALFORMED)
    assert len(MALFORMED) >= 15


@pytest.mark.parametrize(("name", "expected"), sorted(MALFORMED.items()), ids=sorted(MALFORMED))
def test_a_malformed_file_is_refused_at_its_line(name: str, expected: tuple[int | None, str]) -> None:
    line, text = expected
    report = validate_file(BAD / name)
    assert not report.ok
    assert [error.line for error in report.errors if text in error.message] == [line], report.errors
    # Good lines around the bad one stay clean.
    assert {error.line for error in report.errors} == {line}, report.errors


@pytest.mark.parametrize(
    ("name", "data_format", "examples"),
    [
        ("text.jsonl", DataFormat.TEXT, 3),
        ("messages.jsonl", DataFormat.MESSAGES, 3),
        ("prompt_completion.jsonl", DataFormat.PROMPT_COMPLETION, 3),
        ("preference.jsonl", DataFormat.PREFERENCE, 3),
        ("tool_calls.jsonl", DataFormat.MESSAGES, 3),
        ("starts_with_assistant.jsonl", DataFormat.MESSAGES, 1),
    ],
)
def test_a_good_file_passes_with_its_format_and_count(name: str, data_format: DataFormat, examples: int) -> None:
    report = validate_file(GOOD / name)
    assert report.errors == []
    assert (report.format, report.examples, report.lines) == (data_format, examples, examples)


def test_loaded_examples_keep_the_weights_and_order() -> None:
    records = load_examples(GOOD / "messages.jsonl")
    assert all(isinstance(record, MessagesRecord) for record in records)
    joke = records[1]
    assert isinstance(joke, MessagesRecord)
    assert [(m.role, m.weight) for m in joke.messages] == [
        ("user", None),
        ("assistant", 0),
        ("user", None),
        ("assistant", 1),
    ]


def test_loading_a_bad_training_file_names_the_field_and_the_lines() -> None:
    with pytest.raises(InvalidInput) as raised:
        load_examples(BAD / "roles_do_not_alternate.jsonl")
    error = raised.value
    assert (error.reason, error.field) == ("InvalidTrainingData", "spec.trainingFile")
    assert error.message.startswith("spec.trainingFile: 1 problem(s) in roles_do_not_alternate.jsonl: ")
    assert "roles_do_not_alternate.jsonl:2: `messages[1]` is a user message after a user message" in error.message
    assert error.hint is not None
    assert "kubetune validate-data" in error.hint


def test_loading_a_bad_validation_file_has_its_own_reason(tmp_path: Path) -> None:
    lines = [json.dumps({"text": 7})] * 8
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        load_examples(path, field="spec.validationFile")
    assert (raised.value.reason, raised.value.field) == ("InvalidValidationData", "spec.validationFile")
    # The first five errors are quoted, the rest counted.
    assert raised.value.message.count("must be a string") == 5
    assert raised.value.message.endswith("; and 3 more")


def test_errors_are_capped_and_the_rest_counted(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"text": index}) + "\n" for index in range(120)), encoding="utf-8")
    report = validate_file(path, limits=DataLimits(max_errors=50))
    assert [error.line for error in report.errors] == list(range(1, 51))
    assert (report.errors_omitted, report.error_count, report.examples) == (70, 120, 0)


def test_a_file_above_the_size_limit_is_refused_before_reading() -> None:
    report = validate_file(GOOD / "text.jsonl", limits=DataLimits(max_file_bytes=16))
    assert [(error.line, "above the limit" in error.message) for error in report.errors] == [(None, True)]
    assert report.lines == 0


def test_the_default_size_limit_is_togethers() -> None:
    assert DataLimits().max_file_bytes == int(50.1 * 2**30)


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (GOOD / "text.jsonl").read_bytes())
    assert validate_file(path).ok


def _write_parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_rows_are_validated_like_lines(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (GOOD / "messages.jsonl").read_text(encoding="utf-8").splitlines()]
    good = _write_parquet(tmp_path / "good.parquet", rows)
    report = validate_file(good)
    assert (report.format, report.examples, report.errors) == (DataFormat.MESSAGES, 3, [])
    # Parquet fills a field missing from one row with null: null weight is no weight.
    assert load_examples(good) == load_examples(GOOD / "messages.jsonl")

    rows[2] = {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi again"}]}
    bad = validate_file(_write_parquet(tmp_path / "bad.parquet", rows))
    assert [error.line for error in bad.errors] == [3, 3]
    assert "after a user message" in bad.errors[0].message
    assert "no assistant message" in bad.errors[1].message


def test_a_parquet_file_with_an_extra_column_names_each_row(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "extra.parquet", [{"text": "a", "id": 1}, {"text": "b", "id": 2}])
    report = validate_file(path)
    assert [(error.line, error.message.startswith("unknown field `id`")) for error in report.errors] == [
        (1, True),
        (2, True),
    ]


def test_a_corrupt_parquet_file_is_one_file_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    report = validate_file(path)
    assert [error.line for error in report.errors] == [None]
    assert report.errors[0].message.startswith("not a readable Parquet file")


def test_text_records_load_as_text(tmp_path: Path) -> None:
    assert load_examples(GOOD / "text.jsonl")[0] == TextRecord(text="The cat sat on the mat.")
