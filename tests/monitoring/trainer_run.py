"""A real tiny training run whose rank-0 metrics are served over HTTP, held in Saving until released.

DataDownload, Initialization and Training are the real stages on a tiny Llama from a local HF
cache (offline); Saving waits for `release()` before running for real, so a scrape sees what a
pod's scrape sees while a job is still running: steps done, loss, tokens per second, the last
step's time, and a stage running.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from kubetune_trainer.contract import Result, RuntimeSettings
from kubetune_trainer.metrics import TrainerMetrics, serve_metrics
from kubetune_trainer.report import FanOutReporter, RecordingReporter

from ..trainer.training_jobs import chat_lines, trainer_config, write_jsonl


def _utc_now() -> datetime:
    return datetime.now(tz=UTC)


class HeldTrainerRun:
    """Start with `start()`; the run blocks in Saving until `release()`; `finish()` returns its Result."""

    def __init__(self, workdir: Path, *, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.metrics = TrainerMetrics(CollectorRegistry())
        self.recorded = RecordingReporter()
        self._released = threading.Event()
        self._saving = threading.Event()
        self._result: Result | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="trainer", daemon=True)
        self._server: Any = None

    def start(self) -> None:
        self._server = serve_metrics(self.metrics.registry, port=self.port, address="127.0.0.1")
        self._thread.start()

    @property
    def saving(self) -> bool:
        """True once training is done and the run waits in Saving."""
        return self._saving.is_set()

    def release(self) -> None:
        self._released.set()

    def finish(self, timeout: float = 60.0) -> Result:
        self._released.set()
        self._thread.join(timeout)
        if self._server is not None:
            self._server.shutdown()
        if self._error is not None:
            raise self._error
        assert self._result is not None, "the trainer run did not end"
        return self._result

    def _run(self) -> None:
        try:
            self._result = self._train()
        except BaseException as error:  # surfaced by finish()
            self._error = error
        finally:
            self._saving.set()

    def _train(self) -> Result:
        # torch and transformers load here, in the run's thread, while the caller starts Prometheus.
        from kubetune_trainer.pipeline import STAGES, run_pipeline
        from kubetune_trainer.tiny_model import write_tiny_model

        hf_home = self.workdir / "hf"
        model = write_tiny_model(arch="llama", repo_id="tiny-org/tiny-llama", hf_home=hf_home)
        training_file = write_jsonl(self.workdir / "train.jsonl", chat_lines(48, seed=3))
        config = trainer_config(model, work_dir=self.workdir / "work", training_file=training_file)
        config = config.model_copy(
            update={"runtime": RuntimeSettings(work_dir=str(self.workdir / "work"), cache_dir=str(hf_home / "hub"))}
        )

        def save_when_released(*handed: Any) -> Any:
            self._saving.set()
            self._released.wait(120)
            return STAGES.save(*handed)

        return run_pipeline(
            config,
            environ={"HF_HUB_OFFLINE": "1"},
            clock=_utc_now,
            reporter=FanOutReporter([self.metrics, self.recorded]),
            stages=dataclasses.replace(STAGES, save=save_when_released),
        )
