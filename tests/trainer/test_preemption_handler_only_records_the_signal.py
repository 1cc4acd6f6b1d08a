"""The SIGTERM handler only records the signal; the deadline's own thread does the rest.

Python runs a signal handler in the main thread, between two bytecodes of whatever it was doing
(a log write, a collective, `Thread.start()`). Logging or starting a thread from there re-enters
code the main thread may be in the middle of, so the handler records the time and writes one
byte to a pipe; the thread waiting on it since `install` logs and, when the budget runs out,
writes the Result and ends the process.

- In process: a SIGTERM inside the loop logs nothing and starts no thread from the handler.
- A real process and a real signal landing while the main thread holds threading's limbo lock
  (inside `Thread.start()`): the handler returns, the thread logs, and the deadline ends the
  process with its action's exit code.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from kubetune_trainer.preemption import Preemption

SIGNAL_INSIDE_THREAD_START = textwrap.dedent(
    """
    import logging, os, signal, sys, threading, time
    from kubetune_trainer.preemption import Preemption

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    preemption = Preemption(budget_seconds=0.5)
    preemption.install()
    preemption.on_deadline(lambda: 7)
    # The state of a main thread inside Thread.start() (a data loader, an fsspec event loop).
    with threading._active_limbo_lock:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here, with the lock held
        print("handled", flush=True)
    time.sleep(60)  # the deadline ends the process after 0.5 s
    print("the deadline never fired", flush=True)
    """
)


def test_a_sigterm_inside_thread_start_is_handled_and_the_deadline_fires() -> None:
    try:
        ended = subprocess.run(
            [sys.executable, "-c", SIGNAL_INSIDE_THREAD_START],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as hung:
        raise AssertionError(f"the SIGTERM handler hung the process: {hung.stdout!r} {hung.stderr!r}") from None

    assert ended.stdout.splitlines() == ["handled"], ended.stderr
    assert ended.returncode == 7, ended.stderr
    assert "SIGTERM received" in ended.stderr


def test_the_handler_logs_nothing_and_starts_no_thread(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    preemption = Preemption(budget_seconds=30)
    restore = preemption.install()
    preemption.on_deadline(lambda: 0)
    threads = threading.active_count()
    try:
        with preemption.deferred():
            preemption.handle(signal.SIGTERM, None)
            # The deadline's thread may already have logged (it wakes on the pipe at once): only
            # records made on this thread would be the handler's own.
            handler_records = [r for r in caplog.records if r.thread == threading.get_ident()]
            handler_threads = threading.active_count()
        deadline = time.monotonic() + 30
        while not caplog.records:  # the deadline's thread wakes and logs
            assert time.monotonic() < deadline, "the deadline's thread never logged"
            time.sleep(0.01)
    finally:
        restore()

    assert preemption.requested
    assert handler_records == []
    assert handler_threads == threads
    assert [r.getMessage() for r in caplog.records] == ["SIGTERM received: 30 s to checkpoint and end"]
    assert caplog.records[0].thread != threading.get_ident()  # logged by the deadline's thread
