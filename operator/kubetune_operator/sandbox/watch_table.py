"""`kubectl get ftj -w`, printed from a FineTuneJob: the CRD's own printer columns, one row per change.

The columns come from the generated CRD (`finetunejob_crd()`'s additionalPrinterColumns of
priority 0), so the demo shows what `kubectl get ftj` shows, and follows the CRD when it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from ..api.crdgen import finetunejob_crd

_MIN_WIDTHS = {"NAME": 12, "PHASE": 11, "STAGE": 16, "PROGRESS": 16, "MODEL": 8, "ERROR": 14}


def printer_columns() -> list[tuple[str, str]]:
    """(header, jsonPath) of the columns `kubectl get ftj` prints without `-o wide`."""
    (version,) = finetunejob_crd()["spec"]["versions"]
    return [
        (column["name"].upper(), column["jsonPath"])
        for column in version["additionalPrinterColumns"]
        if not column.get("priority")
    ]


def _lookup(obj: Mapping[str, Any], json_path: str) -> Any:
    """A printer column's simple `.a.b.c` path; None when any part is absent (an empty cell)."""
    node: Any = obj
    for key in json_path.lstrip(".").split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def human_age(seconds: float) -> str:
    """Kubernetes' HumanDuration, the AGE column: 45s, 2m30s, 12m, 3h5m, 2d3h."""
    whole = int(seconds)
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"


def row(job: Mapping[str, Any], *, now: datetime) -> dict[str, str]:
    """NAME and every printer column of `job`, as the strings kubectl prints."""
    values = {"NAME": str(job.get("metadata", {}).get("name", ""))}
    for header, json_path in printer_columns():
        value = _lookup(job, json_path)
        if header == "AGE" and isinstance(value, str):
            created = datetime.fromisoformat(value.replace("Z", "+00:00"))
            values[header] = human_age((now - created).total_seconds())
        else:
            values[header] = "" if value is None else str(value)
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
