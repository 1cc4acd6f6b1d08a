"""Preference pairs, function calling and reasoning validate; files built to break the reader cannot.

Together's preference format fits trainingMethod dpo only, supervised formats sft only, and the
refusal says which method the file fits. A blank line at the end of a file and a conversation
starting with the assistant are accepted (Together's checker accepts both). A line over the size
limit is refused at its line without ever being held whole, and arrays nested 100,000 deep are a
line error, not a RecursionError.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from kubetune_operator.cli import main
from kubetune_trainer.contract import TrainingMethod
from kubetune_trainer.data import DataFormat, DataLimits, load_examples, validate_file
from kubetune_trainer.data.records import MessagesRecord, PreferenceRecord
from kubetune_trainer.errors import InvalidInput

from ..conftest import REPO

GOOD = REPO / "tests" / "data" / "good_data"
MIB = 2**20


def test_preference_pairs_load_with_both_outputs() -> None:
    pairs = load_examples(GOOD / "preference.jsonl", method=TrainingMethod.DPO)
    assert all(isinstance(pair, PreferenceRecord) for pair in pairs)
    first = pairs[0]
    assert isinstance(first, PreferenceRecord)
    assert (first.preferred_output[0].content, first.non_preferred_output[0].content) == ("Paris.", "Lyon.")


def test_preference_pairs_with_sft_are_refused_naming_dpo() -> None:
    with pytest.raises(InvalidInput) as refused:
        load_examples(GOOD / "preference.jsonl", method=TrainingMethod.SFT)
    assert "preference.jsonl:1: preference pairs" in refused.value.message
    assert (
        "fit trainingMethod dpo, and this job's trainingMethod is sft: set trainingMethod: dpo" in refused.value.message
    )


def test_supervised_examples_with_dpo_are_refused_naming_sft() -> None:
    report = validate_file(GOOD / "messages.jsonl", method=TrainingMethod.DPO)
    assert [error.line for error in report.errors] == [1]
    assert report.errors[0].message.startswith(
        "a messages example fits trainingMethod sft, and this job's trainingMethod is dpo"
    )


def test_validate_data_checks_the_method_it_is_told(capsys: pytest.CaptureFixture[str]) -> None:
    path = GOOD / "preference.jsonl"
    assert main(["validate-data", str(path), "--training-method", "dpo"]) == 0
    assert capsys.readouterr().out == f"{path}: format preference, 3 examples, no errors\n"
    assert main(["validate-data", str(path), "--training-method", "sft"]) == 1
    assert "set trainingMethod: dpo" in capsys.readouterr().out


def test_tool_calls_tools_and_reasoning_load() -> None:
    records = load_examples(GOOD / "tool_calls.jsonl", method=TrainingMethod.SFT)
    first = records[0]
    assert isinstance(first, MessagesRecord)
    assert first.tools is not None
    assert first.tools[0].function.name == "get_weather"
    call = first.messages[1].template_dict()["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert first.messages[2].template_dict()["tool_call_id"] == "call_1"
    assert first.messages[3].template_dict()["reasoning_content"] == "The tool said 20."
    second = records[1]
    assert isinstance(second, MessagesRecord)
    assert second.messages[1].thinking == "A greeting."


def test_a_trailing_blank_line_is_accepted_and_a_blank_line_between_examples_is_not(tmp_path: Path) -> None:
    report = validate_file(GOOD / "trailing_blank_line.jsonl")
    assert (report.errors, report.examples, report.format) == ([], 2, DataFormat.TEXT)
    inner = tmp_path / "inner.jsonl"
    inner.write_text('{"text": "a"}\n\n{"text": "b"}\n\n', encoding="utf-8")
    assert [(e.line, e.message) for e in validate_file(inner).errors] == [
        (2, "blank line; every line must hold one JSON object")
    ]


def test_a_conversation_may_start_with_the_assistant() -> None:
    assert validate_file(GOOD / "starts_with_assistant.jsonl").errors == []


def test_a_50_mib_line_is_refused_at_its_line_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"text": "fine"}) + "\n")
        out.write('{"text": "' + "x" * (50 * MIB) + '"}\n')
        out.write(json.dumps({"text": "also fine"}) + "\n")
    tracemalloc.start()
    try:
        report = validate_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(e.line, e.message) for e in report.errors] == [
        (2, "the line is longer than 8 MiB, the most one example may take; split the example or shorten it")
    ]
    assert report.examples == 2
    # One line at the limit and a skip buffer at most, never the 50 MiB line.
    assert peak < 2 * DataLimits().max_line_bytes + 2 * MIB, peak

    # DataDownload's loader (and so the preflight's and the job's) refuses it the same way.
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as refused:
            load_examples(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "huge.jsonl:2: the line is longer than 8 MiB" in refused.value.message
    assert refused.value.reason == "InvalidTrainingData"
    assert peak < 2 * DataLimits().max_line_bytes + 2 * MIB, peak


def test_the_line_limit_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": "y" * 500}) + "\n" + json.dumps({"text": "short"}) + "\n", encoding="utf-8")
    report = validate_file(path, limits=DataLimits(max_line_bytes=200))
    assert [e.line for e in report.errors] == [1]
    assert report.examples == 1


def test_100000_nested_arrays_are_a_line_error_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "ok"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    assert main(["validate-data", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:2: arrays and objects nested more than 64 deep; an example is never that deep",
        f"{path}: format text, 1 example, 1 error",
    ]
    with pytest.raises(InvalidInput) as refused:
        load_examples(path)
    assert "deep.jsonl:2: arrays and objects nested more than 64 deep" in refused.value.message
