"""The ranks of a pod share one termination log: it holds one whole Result, the first failure's."""

from __future__ import annotations

import threading
from pathlib import Path

from kubetune_trainer.contract import ErrorClass, JobError, Outcome, Result, Stage
from kubetune_trainer.termination import clear_termination_message, write_termination_message


def _result(rank: int) -> Result:
    error = JobError(
        error_class=ErrorClass.CUDA_OOM,
        reason="OutOfMemory",
        message=f"rank {rank} ran out of memory " + "x" * (rank * 97),  # every rank's Result has its own length
        hint="Lower hyperparameters.maxSeqLength.",
        stage=Stage.TRAINING,
    )
    return Result(outcome=Outcome.FAILED, exit_code=5, error=error)


def _preempted() -> Result:
    error = JobError(
        error_class=ErrorClass.INTERNAL,
        reason="Preempted",
        message="the trainer was terminated (SIGTERM)",
        stage=Stage.TRAINING,
        retryable=True,
    )
    return Result(outcome=Outcome.FAILED, exit_code=1, error=error)


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    results = [_result(rank) for rank in range(6)]
    together = threading.Barrier(len(results))
    seen: list[str] = []

    def write(rank: int) -> None:
        for _ in range(60):
            together.wait()  # every rank writes at the same moment...
            write_termination_message(results[rank], path)
            together.wait()  # ...and one of them reads what is left once all are done, then starts afresh
            if rank == 0:
                seen.append(path.read_text(encoding="utf-8"))
                clear_termination_message(path)
            together.wait()

    threads = [threading.Thread(target=write, args=(rank,)) for rank in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 60
    for text in seen:
        assert Result.from_termination_message(text) in results


def test_the_first_failure_stays_when_torchrun_stops_the_other_ranks(tmp_path: Path) -> None:
    # Rank 1 runs out of memory; torchrun then sends SIGTERM to rank 0, which fails as Preempted
    # (retryable). The operator must read the cause, not the consequence, or it retries an OOM forever.
    path = tmp_path / "termination-log"
    write_termination_message(_result(1), path)
    write_termination_message(_preempted(), path)

    kept = Result.from_termination_message(path.read_text(encoding="utf-8"))
    assert kept.error is not None
    assert (kept.error.error_class, kept.error.reason, kept.error.retryable) == (
        ErrorClass.CUDA_OOM,
        "OutOfMemory",
        False,
    )


def test_a_new_launch_clears_the_result_of_an_earlier_run(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    write_termination_message(_preempted(), path)
    clear_termination_message(path)
    write_termination_message(Result(outcome=Outcome.SUCCEEDED), path)

    assert Result.from_termination_message(path.read_text(encoding="utf-8")).outcome is Outcome.SUCCEEDED
    clear_termination_message(tmp_path / "never-written")  # nothing to clear is not an error
    assert not (tmp_path / "never-written").exists()


def test_an_unwritable_location_is_logged_not_raised(tmp_path: Path) -> None:
    write_termination_message(_result(0), tmp_path / "missing-directory" / "termination-log")
