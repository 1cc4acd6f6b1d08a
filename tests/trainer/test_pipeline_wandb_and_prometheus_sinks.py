"""Rank 0's optional sinks, wired as the trainer entry point wires them (`cli.build_reporter`).

- W&B with WANDB_MODE=offline: the run's files on disk hold the config, the logged history and
  the summary; the API key comes from the variable the config names and is written nowhere.
- Prometheus on its own registry, served on `metricsPort`: a scrape shows step, loss, learning
  rate, tokens per second and the stage running.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from wandb.proto.wandb_internal_pb2 import Record  # type: ignore[attr-defined]  # generated per version

from kubetune_trainer.cli import build_reporter
from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import (
    Outcome,
    Progress,
    Result,
    Stage,
    StageRecord,
    StageState,
    WandbTarget,
)

from .local_runs import trainer_config

API_KEY = "wandb-key-0123456789abcdef0123456789abcdef01234567"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _wandb_records(run_file: Path) -> list[Any]:
    """The records of an offline run's `.wandb` file: LevelDB's log format, 32 KiB blocks, protobuf records."""
    raw, block = run_file.read_bytes(), 32768
    position, pending, records = 7, b"", []  # 7: the ":W&B" header, its magic and version
    while position + 7 <= len(raw):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[position : position + 7])
        pending += raw[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in {1, 4}:  # FULL or LAST: a whole record is assembled
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _drive(reporter: object) -> None:
    """What a short run reports: Training starts, three steps and an eval, Training ends."""
    running = [StageRecord(name=Stage.TRAINING, state=StageState.RUNNING, start_time=T0)]
    reporter.stage_changed(Stage.TRAINING, running)  # type: ignore[attr-defined]
    for step, loss in enumerate((2.5, 2.0, 1.5), start=1):
        reporter.progress(  # type: ignore[attr-defined]
            Progress(step=step, total_steps=3, loss=loss, learning_rate=1e-3 / step, tokens_per_second=1000.0 + step)
        )
    reporter.progress(Progress(step=3, total_steps=3, eval_loss=1.75))  # type: ignore[attr-defined]


def test_wandb_offline_writes_the_run_files_without_the_api_key(tmp_path: Path) -> None:
    config = trainer_config(tmp_path).model_copy(
        update={"wandb": WandbTarget(project="kubetune-tests", name="tiny-chat", api_key_env="MY_WANDB_KEY")}
    )
    environ = {"WANDB_MODE": "offline", "MY_WANDB_KEY": API_KEY}
    reporter, stop = build_reporter(config, environ=environ, dist=DistInfo(), stream=io.StringIO())

    _drive(reporter)
    ended = [StageRecord(name=Stage.TRAINING, state=StageState.SUCCEEDED, start_time=T0, end_time=T0)]
    reporter.stage_changed(Stage.TRAINING, ended)
    reporter.finished(Result(outcome=Outcome.SUCCEEDED))
    stop()

    (run_dir,) = (Path(config.runtime.work_dir) / "wandb" / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    records = _wandb_records(run_file)
    history = [
        {item.nested_key[0]: json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]
    assert [row["train/loss"] for row in history] == [2.5, 2.0, 1.5]
    assert [row["_step"] for row in history] == [1, 2, 3]
    assert history[-1]["eval/loss"] == 1.75
    summary = {
        item.key or "/".join(item.nested_key): item.value_json
        for record in records
        if record.WhichOneof("record_type") == "summary"
        for item in record.summary.update
    }
    assert summary["outcome"] == '"Succeeded"'
    (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    assert run.project == "kubetune-tests"
    assert run.display_name == "tiny-chat"
    run_config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert run_config["hyperparameters"]["learningRate"] == 1e-3
    assert run_config["model"] == "tiny-org/tiny-llama"
    written = b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    assert API_KEY.encode() not in written


def test_prometheus_metrics_are_served_on_the_metrics_port(tmp_path: Path) -> None:
    port = _free_port()
    config = trainer_config(tmp_path).model_copy(update={"metrics_port": port})
    reporter, stop = build_reporter(config, environ={}, dist=DistInfo(), stream=io.StringIO())
    try:
        _drive(reporter)
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop()

    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in scrape.splitlines() if line and line[0] != "#"}
    assert samples["kubetune_trainer_step"] == 3
    assert samples["kubetune_trainer_total_steps"] == 3
    assert samples["kubetune_trainer_loss"] == 1.5
    assert samples["kubetune_trainer_eval_loss"] == 1.75
    assert samples["kubetune_trainer_learning_rate"] == 1e-3 / 3
    assert samples["kubetune_trainer_tokens_per_second"] == 1003.0
    assert samples['kubetune_trainer_stage{stage="Training"}'] == 1
    assert samples['kubetune_trainer_stage{stage="DataDownload"}'] == 0
    # Its own registry: nothing from the process-global default (python_gc_*, process_*).
    assert not [name for name in samples if name.startswith(("python_", "process_"))]


def test_ranks_other_than_0_report_nowhere(tmp_path: Path) -> None:
    port = _free_port()
    config = trainer_config(tmp_path).model_copy(update={"metrics_port": port})
    stream = io.StringIO()
    reporter, stop = build_reporter(config, environ={}, dist=DistInfo(rank=1, world_size=2), stream=stream)

    _drive(reporter)
    stop()

    assert stream.getvalue() == ""
    try:
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.ConnectError:
        return
    raise AssertionError("rank 1 must not serve metrics")


def test_a_refused_wandb_key_is_a_warning_in_the_result_never_the_key(tmp_path: Path) -> None:
    from kubetune_trainer.pipeline import run_pipeline
    from kubetune_trainer.report import RecordingReporter
    from kubetune_trainer.wandb_report import WANDB_OFF, WandbReporter

    from .stand_in_stages import stand_in_stages

    config = trainer_config(tmp_path).model_copy(
        update={"wandb": WandbTarget(project="kubetune-tests", api_key_env="MY_WANDB_KEY")}
    )
    refused_key = "too-short-key-1234"
    reporter, warning = WandbReporter.start(config, environ={"MY_WANDB_KEY": refused_key}, directory=tmp_path / "wandb")
    assert reporter is None
    assert warning is not None
    assert warning.reason == WANDB_OFF
    assert "spec.wandb.apiKeySecretRef" in warning.message
    assert refused_key not in warning.message

    # The run trains on, and its Result (which the operator puts in status.warnings with an Event) says so.
    result = run_pipeline(
        config,
        environ={},
        clock=lambda: T0,
        reporter=RecordingReporter(),
        dist=DistInfo(),
        stages=stand_in_stages(),  # stages that do nothing: the warning alone is under test
        warnings=[warning],
    )
    assert result.outcome is Outcome.SUCCEEDED
    assert [w.reason for w in result.warnings] == [WANDB_OFF]
