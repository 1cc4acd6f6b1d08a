"""Ranks failing at the same moment share one termination log: it always holds one whole Result."""

from __future__ import annotations

import threading
from pathlib import Path

from kubetune_trainer.contract import ErrorClass, JobError, Outcome, Result, Stage
from kubetune_trainer.pipeline import write_termination_message


def _result(rank: int) -> Result:
    error = JobError(
        error_class=ErrorClass.CUDA_OOM,
        reason="OutOfMemory",
        message=f"rank {rank} ran out of memory " + "x" * (rank * 97),  # every rank's Result has its own length
        hint="Lower hyperparameters.maxSeqLength.",
        stage=Stage.TRAINING,
    )
    return Result(outcome=Outcome.FAILED, exit_code=5, error=error)


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    results = [_result(rank) for rank in range(6)]
    together = threading.Barrier(len(results))
    seen: list[str] = []

    def write(rank: int) -> None:
        for _ in range(60):
            together.wait()  # every rank writes at the same moment...
            write_termination_message(results[rank], path)
            together.wait()  # ...and one of them reads what is left once all are done
            if rank == 0:
                seen.append(path.read_text(encoding="utf-8"))

    threads = [threading.Thread(target=write, args=(rank,)) for rank in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 60
    for text in seen:
        assert Result.from_termination_message(text) in results


def test_an_unwritable_location_is_logged_not_raised(tmp_path: Path) -> None:
    write_termination_message(_result(0), tmp_path / "missing-directory" / "termination-log")
