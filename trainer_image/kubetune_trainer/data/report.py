"""What validating a data file found: the limits it was checked against and the line-numbered errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .records import DataFormat

GIB = 2**30
DEFAULT_MAX_FILE_BYTES = int(50.1 * GIB)
"""Together's limit for a fine-tuning file (50.1 GiB)."""
DEFAULT_MAX_ERRORS = 50
MIB = 2**20
DEFAULT_MAX_LINE_BYTES = 8 * MIB
"""Largest line (one example) read: memory stays bounded whatever a file holds."""
DEFAULT_MAX_DEPTH = 64
"""Deepest nesting of arrays and objects in one example (a tool's JSON Schema needs a few levels)."""


class DataLimits(BaseModel):
    """How strict validation is and how much it reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_file_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, ge=1, description="Largest file accepted, in bytes.")
    min_examples: int = Field(1, ge=1, description="Fewest examples a file must hold.")
    max_errors: int = Field(DEFAULT_MAX_ERRORS, ge=1, description="Errors kept in a report; the rest are counted.")
    max_line_bytes: int = Field(
        DEFAULT_MAX_LINE_BYTES, ge=64, description="Longest line (JSONL) or row (Parquet, as JSON) accepted, in bytes."
    )
    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=4, description="Deepest nesting of arrays and objects in an example.")


class DataError(BaseModel):
    """One problem, at a 1-based line (JSONL) or row (Parquet); `line` is None for the file as a whole."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: int | None = Field(description="1-based line or row number; None when the whole file is at fault.")
    message: str = Field(description="What is wrong and what to do about it.")

    def located(self, path: str) -> str:
        """`FILE:LINE: message`, the form compilers and linters print, or `FILE: message` for file errors."""
        return f"{path}: {self.message}" if self.line is None else f"{path}:{self.line}: {self.message}"


class DataReport(BaseModel):
    """The outcome of validating one file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="The file validated.")
    format: DataFormat | None = Field(description="The file's format, from its first recognisable line.")
    examples: int = Field(ge=0, description="Examples that passed validation.")
    lines: int = Field(ge=0, description="Lines (JSONL) or rows (Parquet) read.")
    errors: list[DataError] = Field(description="The first `max_errors` problems, in file order.")
    errors_omitted: int = Field(0, ge=0, description="Problems found beyond `max_errors`, not listed.")
    tool_examples: int = Field(
        0, ge=0, description="Examples with function calling (tools, tool calls, tool messages)."
    )

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.errors_omitted

    def summary(self) -> str:
        """One line: the format, the example count and the error count."""
        shown = self.format.value if self.format else "unknown"
        noun = "example" if self.examples == 1 else "examples"
        errors = "no errors" if self.ok else f"{self.error_count} error{'s' if self.error_count != 1 else ''}"
        return f"{self.path}: format {shown}, {self.examples} {noun}, {errors}"
