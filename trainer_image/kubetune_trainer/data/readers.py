"""Read a data file row by row, keeping each row's 1-based line (JSONL) or row (Parquet) number.

Readers never stop at a bad row: they yield a `DataError` for it and go on, so a user sees every
problem of a file in one run.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import DataError

PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class Row:
    """One decoded JSON value and where it came from."""

    line: int
    value: Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_jsonl(path: Path) -> Iterator[Row | DataError]:
    """One JSON value per line; bad UTF-8, blank lines and bad JSON are errors at their line."""
    with path.open("rb") as stream:
        for line, read in enumerate(stream, start=1):
            raw = read[len(codecs.BOM_UTF8) :] if line == 1 and read.startswith(codecs.BOM_UTF8) else read
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield DataError(
                    line=line,
                    message=f"not valid UTF-8: byte 0x{raw[error.start]:02x} at byte {error.start + 1} of the line; "
                    "save the file as UTF-8",
                )
                continue
            if not text.strip():
                yield DataError(line=line, message="blank line; every line must hold one JSON object")
                continue
            try:
                value = json.loads(text, parse_constant=_refuse_constant)
            except json.JSONDecodeError as error:
                yield DataError(
                    line=line, message=f"not valid JSON: {error.msg.removesuffix(' at')} at column {error.colno}"
                )
                continue
            except ValueError as error:
                yield DataError(line=line, message=f"not valid JSON: {error}")
                continue
            yield Row(line=line, value=value)


def _without_nulls(value: Any) -> Any:
    # Parquet has no "absent": a struct field missing from one row is null there. Treat null as absent.
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def read_parquet(path: Path) -> Iterator[Row | DataError]:
    """One row per example, numbered from 1; null fields count as absent."""
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]  # noqa: PLC0415 - operator image has no pyarrow
    except ImportError:
        yield DataError(line=None, message="reading Parquet needs pyarrow: pip install 'kubetune[trainer]'")
        return
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError or its own types for corrupt files
        yield DataError(line=None, message=f"not a readable Parquet file: {error}")
        return
    line = 0
    with parquet:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for value in batch.to_pylist():
                line += 1
                yield Row(line=line, value=_without_nulls(value))
