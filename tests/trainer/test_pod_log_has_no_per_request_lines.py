"""A trainer pod's log (`kubectl logs`) holds the trainer's lines, not one per HTTP request.

The status patches go through httpx and the Hub downloads through huggingface_hub's httpx2: both log
every request at INFO, which in a pod (where the trainer logs at INFO) would bury its own lines.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from kubetune_trainer.cli import HTTP_CLIENT_LOGGERS, quiet_http_clients


@pytest.fixture
def restored_levels() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in HTTP_CLIENT_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restored_levels")
def test_request_lines_of_every_http_client_are_dropped_and_the_trainers_kept() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        quiet_http_clients()
        for name in ("httpx", "httpx2", "httpcore", "httpcore2"):
            logging.getLogger(name).info("HTTP Request: PATCH https://api/finetunejobs/x/status 200 OK")
        logging.getLogger("kubetune_trainer.kube_report").info("saved the model: 13 files")
        logging.getLogger("httpx2").warning("retrying after a 503")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)

    lines = stream.getvalue().splitlines()
    assert lines == ["saved the model: 13 files", "retrying after a 503"]
