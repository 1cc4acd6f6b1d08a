"""`kubetune jobs list -o wide`: REASON says why a Queued job waits (BudgetExceeded) when it has no error."""

from __future__ import annotations

from kubetune_operator.cli.jobs import WIDE_COLUMNS, _row


def _job(phase: str, scheduled: dict[str, str], error: dict[str, str] | None = None) -> dict[str, object]:
    status: dict[str, object] = {"phase": phase, "attempt": 0, "conditions": [{"type": "Scheduled", **scheduled}]}
    if error:
        status["error"] = error
    return {"metadata": {"name": "big-run"}, "spec": {"model": "m"}, "status": status}


def test_a_job_waiting_for_its_budget_shows_budget_exceeded() -> None:
    row = dict(
        zip(WIDE_COLUMNS, _row(_job("Queued", {"status": "False", "reason": "BudgetExceeded"}), wide=True), strict=True)
    )
    assert (row["PHASE"], row["REASON"]) == ("Queued", "BudgetExceeded")


def test_an_error_reason_comes_first_and_a_running_job_shows_none() -> None:
    failed = _job("Queued", {"status": "False", "reason": "RetryBackoff"}, {"class": "Internal", "reason": "Preempted"})
    assert dict(zip(WIDE_COLUMNS, _row(failed, wide=True), strict=True))["REASON"] == "Preempted"
    running = _job("Running", {"status": "True", "reason": "PodsScheduled"})
    assert dict(zip(WIDE_COLUMNS, _row(running, wide=True), strict=True))["REASON"] == ""
