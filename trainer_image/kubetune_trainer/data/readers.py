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
from typing import Any, BinaryIO

from .report import DataError, DataLimits

PARQUET_BATCH_ROWS = 1024
SKIP_CHUNK_BYTES = 2**20


@dataclass(frozen=True)
class Row:
    """One decoded JSON value and where it came from."""

    line: int
    value: Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_jsonl(path: Path, *, limits: DataLimits | None = None) -> Iterator[Row | DataError]:
    """One JSON value per line; bad UTF-8, blank lines, bad JSON, over-long and over-deep lines are errors.

    A line is never held whole beyond `limits.max_line_bytes`: a longer one is reported and skipped
    in chunks. Blank lines at the end of the file (editors write them) are accepted; a blank line
    with an example after it is an error.
    """
    limits = limits or DataLimits()
    blank_lines: list[int] = []
    with path.open("rb") as stream:
        for line, read in enumerate(_bounded_lines(stream, limit=limits.max_line_bytes), start=1):
            if read is None:
                yield from _blank_errors(blank_lines)
                yield DataError(
                    line=line,
                    message=f"the line is longer than {_size(limits.max_line_bytes)}, the most one example may take; "
                    "split the example or shorten it",
                )
                continue
            raw = read[len(codecs.BOM_UTF8) :] if line == 1 and read.startswith(codecs.BOM_UTF8) else read
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield from _blank_errors(blank_lines)
                yield DataError(
                    line=line,
                    message=f"not valid UTF-8: byte 0x{raw[error.start]:02x} at byte {error.start + 1} of the line; "
                    "save the file as UTF-8",
                )
                continue
            if not text.strip():
                blank_lines.append(line)
                continue
            yield from _blank_errors(blank_lines)
            yield _decoded(text, line=line, max_depth=limits.max_depth)


def _bounded_lines(stream: BinaryIO, *, limit: int) -> Iterator[bytes | None]:
    """Each line's bytes, or None for a line longer than `limit` (read past in chunks, never kept)."""
    while True:
        read = stream.readline(limit + 1)
        if not read:
            return
        if len(read) <= limit or read.endswith(b"\n"):
            yield read
            continue
        while not read.endswith(b"\n"):
            read = stream.readline(SKIP_CHUNK_BYTES)
            if not read:
                break
        yield None


def _blank_errors(blank_lines: list[int]) -> Iterator[DataError]:
    for blank in blank_lines:
        yield DataError(line=blank, message="blank line; every line must hold one JSON object")
    blank_lines.clear()


def _decoded(text: str, *, line: int, max_depth: int) -> Row | DataError:
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        return DataError(line=line, message=f"not valid JSON: {error.msg.removesuffix(' at')} at column {error.colno}")
    except RecursionError:
        return _too_deep(line, max_depth)
    except ValueError as error:
        return DataError(line=line, message=f"not valid JSON: {error}")
    # Counting brackets is fast; only a line with enough of them can be too deep.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(value) > max_depth:
        return _too_deep(line, max_depth)
    return Row(line=line, value=value)


def _too_deep(line: int, max_depth: int) -> DataError:
    return DataError(
        line=line, message=f"arrays and objects nested more than {max_depth} deep; an example is never that deep"
    )


def nesting_depth(value: Any) -> int:
    """How deep arrays and objects nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in items if isinstance(child, dict | list))
    return deepest


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count} bytes"


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
