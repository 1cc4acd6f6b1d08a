"""Imported by Python at start-up in a process that has this folder on its PYTHONPATH (a test's torchrun ranks).

When `KUBETUNE_TEST_EXIT_THREADS` names a file, a rank (a process with `RANK` set: not torchrun's agent)
appends one JSON line to it as it exits, at the first of its atexit handlers to be registered, so the last to
run (after the program's own, before the interpreter's shutdown): its `RANK` and its threads' names as the
kernel knows them, C++ threads included (gloo's process group runs `pt_gloo_runloop` and `gloo_tcp_loop`).
"""

import atexit
import json
import os
from pathlib import Path


def _record_threads() -> None:
    target = os.environ.get("KUBETUNE_TEST_EXIT_THREADS")
    if not target or "RANK" not in os.environ:
        return
    names = sorted((task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())
    with Path(target).open("a", encoding="utf-8") as lines:
        lines.write(json.dumps({"rank": os.environ["RANK"], "threads": names}) + "\n")


atexit.register(_record_threads)
