"""`kubectl get ftj -w`, printed from a FineTuneJob: the CRD's own printer columns, one row per change.

The columns come from the generated CRD (`finetunejob_crd()`'s additionalPrinterColumns of
priority 0), so the demo shows what `kubectl get ftj` shows, and follows the CRD when it changes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from kubetune_operator.api.crdgen import finetunejob_crd

from .apimachinery import JsonObject, printer_column_cells

_MIN_WIDTHS = {"NAME": 12, "PHASE": 11, "STAGE": 16, "PROGRESS": 16, "MODEL": 8, "ERROR": 14}


@functools.cache
def _default_columns() -> tuple[JsonObject, ...]:
    """Read once: the CRD is generated from the models, and a watch prints a row per change."""
    (version,) = finetunejob_crd()["spec"]["versions"]
    return tuple(column for column in version["additionalPrinterColumns"] if not column.get("priority"))


def printer_columns() -> list[tuple[str, str]]:
    """(header, jsonPath) of the columns `kubectl get ftj` prints without `-o wide`."""
    return [(column["name"].upper(), column["jsonPath"]) for column in _default_columns()]


def row(job: Mapping[str, Any], *, now: datetime) -> dict[str, str]:
    """NAME and every printer column of `job`, as the strings kubectl prints (the API server's own cells)."""
    columns = _default_columns()
    cells = printer_column_cells(job, columns, now=now)
    values = {"NAME": str(job.get("metadata", {}).get("name", ""))}
    values.update(
        {column["name"].upper(): "" if cell is None else str(cell) for column, cell in zip(columns, cells, strict=True)}
    )
    return values


class WatchTable:
    """Prints the header once, then a row whenever a column other than AGE changes (as `-w` does on each update)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: dict[str, str] | None = None
        self._widths: dict[str, int] = {}

    def show(self, job: Mapping[str, Any], *, now: datetime) -> bool:
        """Print `job`'s row if it changed; True when a row was printed."""
        values = row(job, now=now)
        changed = {k: v for k, v in values.items() if k != "AGE"}
        if self._last == changed:
            return False
        if self._last is None:
            self._widths = {k: max(len(k), len(v), _MIN_WIDTHS.get(k, 0)) + 3 for k, v in values.items()}
            self._print({k: k for k in values})
        self._last = changed
        self._print(values)
        return True

    def _print(self, values: Mapping[str, str]) -> None:
        cells = [value.ljust(self._widths.get(key, len(value) + 3)) for key, value in values.items()]
        print("".join(cells).rstrip(), file=self._stream, flush=True)
