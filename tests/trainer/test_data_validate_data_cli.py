"""`kubetune validate-data FILE`: every error as FILE:LINE: message, a summary, exit 1 on any error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune_operator.cli import main

from ..conftest import REPO

DATA = REPO / "tests" / "data"


def test_a_clean_file_prints_its_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "good_data" / "messages.jsonl"
    assert main(["validate-data", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: format messages, 3 examples, no errors\n"


def test_each_error_is_printed_at_its_line_and_the_exit_code_is_1(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "bad_data" / "roles_do_not_alternate.jsonl"
    assert main(["validate-data", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:2: `messages[1]` is a user message after a user message; user and assistant must alternate",
        f"{path}: format messages, 1 example, 1 error",
    ]


def test_errors_are_capped_by_max_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"text": n}) + "\n" for n in range(7)), encoding="utf-8")
    assert main(["validate-data", str(path), "--max-errors", "2"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:1: `text` must be a string, got a number",
        f"{path}:2: `text` must be a string, got a number",
        f"{path}: ... and 5 more error(s) not shown (raise --max-errors to see them)",
        f"{path}: format text, 0 examples, 7 errors",
    ]


def test_a_file_level_error_has_no_line_number(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA / "bad_data" / "empty.jsonl"
    assert main(["validate-data", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"{path}: the file is empty; it needs at least one example"


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.jsonl"
    assert main(["validate-data", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"{path}: no such file"


def test_validating_jsonl_needs_no_ml_stack() -> None:
    """The operator image has no torch: the command must not import it, nor pyarrow for JSONL."""
    script = (
        "import sys\n"
        "from kubetune_operator.cli import main\n"
        f"code = main(['validate-data', {str(DATA / 'good_data' / 'messages.jsonl')!r}])\n"
        "heavy = sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'transformers', 'pyarrow', 'httpx'})\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.splitlines()[-1] == "0 []"
