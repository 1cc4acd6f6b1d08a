"""A run that ends as a deadline fires leaves one Result, and the process exits with that Result's code.

The operator reads a Succeeded Result with a non-zero exit code as a crash. Two deadlines can
fire as a run ends on its own: SIGTERM's grace budget and the step watchdog. Each writes its
Result (the first written is kept) and ends the process itself.

- A SIGTERM that arrives after the last stage (the Result written, the handler not yet restored)
  must neither escape as a traceback nor end a succeeded run with exit code 1 when its budget runs
  out: a real process, a real signal, a real deadline timer.
- The watchdog firing just after the run wrote its success exits 0 and reports nothing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from kubetune_trainer.contract import Outcome, Result
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.termination import write_termination_message
from kubetune_trainer.watchdog import StepWatchdog, end_process, stalled_error

from .local_runs import trainer_config

SUCCEEDING_RUN_THEN_SIGTERM = textwrap.dedent(
    """
    import os, signal, sys, time
    from types import SimpleNamespace
    from datetime import UTC, datetime
    from pathlib import Path
    from kubetune_trainer.contract import TrainerConfig
    from kubetune_trainer.pipeline import Stages, run_pipeline
    from kubetune_trainer.preemption import Preemption
    from kubetune_trainer.report import RecordingReporter

    config = TrainerConfig.from_json(Path(sys.argv[1]).read_text())
    preemption = Preemption(budget_seconds=0.2)
    restore = preemption.install()
    nothing = lambda *handed: None  # stages that succeed at once
    counted = lambda ctx: SimpleNamespace(training_tokens=None)  # DataDownload's record reads its count
    result = run_pipeline(
        config,
        environ={},
        clock=lambda: datetime.now(UTC),
        reporter=RecordingReporter(),
        stages=Stages(download=counted, initialize=nothing, train=nothing, save=nothing, upload=nothing),
        preemption=preemption,
    )
    # The window between the run's own Result and putting the handler back (cli._train's finally).
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # the deadline timer fires after 0.2 s and ends the process
    print("the deadline never fired", flush=True)
    restore()
    sys.exit(result.exit_code)
    """
)


def test_sigterm_after_the_run_ended_keeps_its_success_and_exit_code(tmp_path: Path) -> None:
    config = trainer_config(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json(by_alias=True), encoding="utf-8")

    ended = subprocess.run(
        [sys.executable, "-c", SUCCEEDING_RUN_THEN_SIGTERM, str(config_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    standing = Result.from_termination_message(Path(config.termination_log_path).read_text(encoding="utf-8"))
    assert standing.outcome is Outcome.SUCCEEDED
    assert "Traceback" not in ended.stderr, ended.stderr
    assert "the deadline never fired" not in ended.stdout  # the deadline ended it, with the success's code
    assert ended.returncode == 0, ended.stderr


def test_watchdog_firing_after_a_success_exits_zero_and_reports_nothing(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    success = Result(outcome=Outcome.SUCCEEDED, exit_code=0)
    write_termination_message(success, log)
    stalled = Result(
        outcome=Outcome.FAILED,
        exit_code=1,
        error=stalled_error(idle_seconds=1000, limit_seconds=900, step=7),
        checkpoint_step=6,
    )
    reporter = RecordingReporter()
    watchdog = StepWatchdog(floor_seconds=900, on_stall=lambda result: None, clock=lambda: datetime.now(UTC))
    codes: list[int] = []

    end_process(stalled, watchdog=watchdog, reporter=reporter, termination_log=log, exit_process=codes.append)

    assert codes == [0]
    assert Result.from_termination_message(log.read_text(encoding="utf-8")) == success
    assert reporter.results == []
