"""`make demo` prints the job as `kubectl get ftj -w` does: the CRD's printer columns, a row per change."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from kubetune_sandbox.apimachinery import human_duration
from kubetune_sandbox.watch_table import WatchTable, printer_columns

CREATED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def job(phase: str, *, stage: str | None = None, progress: str | None = None, error: str | None = None) -> dict:
    status: dict = {"phase": phase}
    if stage:
        status["stage"] = stage
    if progress:
        status["progress"] = {"summary": progress}
    if error:
        status["error"] = {"class": error}
    return {
        "metadata": {"name": "quickstart", "creationTimestamp": "2026-01-01T12:00:00Z"},
        "spec": {"model": "auto"},
        "status": status,
    }


def test_the_columns_are_the_crds_default_printer_columns() -> None:
    assert [header for header, _ in printer_columns()] == ["PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (150, "2m30s"),
        (180, "3m"),
        (725, "12m"),
        (11_100, "3h5m"),
        (72_000, "20h"),
        (183_600, "2d3h"),
        (172_800, "2d"),
        (30 * 86_400, "30d"),
        (3 * 365 * 86_400 + 4 * 86_400, "3y4d"),
        (9 * 365 * 86_400, "9y"),
    ],
)
def test_ages_read_as_kubectl_shows_them(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_a_row_is_printed_per_change_and_never_for_an_age_tick() -> None:
    out = io.StringIO()
    table = WatchTable(out)
    moments = [CREATED + timedelta(seconds=s) for s in range(6)]

    assert table.show(job("Validating"), now=moments[0])
    assert not table.show(job("Validating"), now=moments[1])  # only AGE moved
    assert table.show(job("Running", stage="Training", progress="50% (2/4)"), now=moments[2])
    assert table.show(job("Succeeded", stage="Upload", progress="100% (4/4)"), now=moments[3])
    assert table.show(job("Failed", error="InvalidInput"), now=moments[4])

    rows = [line.split() for line in out.getvalue().splitlines()]
    assert rows[0] == ["NAME", "PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE"]
    assert rows[1] == ["quickstart", "Validating", "auto", "0s"]
    assert rows[2] == ["quickstart", "Running", "Training", "50%", "(2/4)", "auto", "2s"]
    assert rows[3] == ["quickstart", "Succeeded", "Upload", "100%", "(4/4)", "auto", "3s"]
    assert rows[4] == ["quickstart", "Failed", "auto", "InvalidInput", "4s"]
    header = out.getvalue().splitlines()[0]
    assert out.getvalue().splitlines()[2].index("Training") == header.index("STAGE")  # columns line up
