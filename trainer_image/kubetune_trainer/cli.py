"""`python -m kubetune_trainer`: run a TrainerConfig's stages, or only its weightless preflight.

    python -m kubetune_trainer --config FILE             # the five stages (alone or under torchrun)
    python -m kubetune_trainer preflight --config FILE   # model and data checks, no weights, no GPU

Both end by writing the `Result` to `terminationLogPath` and exit with its exit code. Rank 0
reports (terminal, Kubernetes status, W&B, Prometheus); the other ranks train and stay quiet.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from . import log_masking
from .context import DistInfo
from .contract import TrainerConfig, WarningNote
from .kube_report import InClusterAccess, KubernetesReporter, StatusPatcher
from .metrics import TrainerMetrics, serve_metrics
from .preemption import Preemption
from .report import FanOutReporter, NullReporter, Reporter, TerminalReporter, describe_result
from .termination import clear_termination_message, read_termination_message, write_termination_message
from .wandb_report import WandbReporter
from .watchdog import StepWatchdog, start_step_watchdog

EXIT_BAD_CONFIG = 2


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kubetune_trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        nargs="?",
        choices=("train", "preflight"),
        default="train",
        help="train (default): run every stage; preflight: only the checks that need no weights",
    )
    parser.add_argument("--config", required=True, type=Path, help="TrainerConfig JSON (the job's ConfigMap)")
    return parser


def main(argv: Sequence[str] | None, *, environ: Mapping[str, str], stream: TextIO) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = TrainerConfig.from_json(args.config.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as unreadable:
        print(f"cannot read the trainer config {args.config}: {unreadable}", file=stream)
        return EXIT_BAD_CONFIG
    dist = DistInfo.from_env(environ)
    line_format = f"%(asctime)s rank{dist.rank} %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(
        level=logging.WARNING if config.report.kind == "terminal" else logging.INFO,
        stream=stream,
        format=line_format,
    )
    log_masking.install(logging.getLogger(), fmt=line_format, secrets=log_masking.secret_values(config, environ))
    quiet_http_clients()
    if dist.local_rank == 0:
        clear_termination_message(Path(config.termination_log_path))
    if args.command == "preflight":
        return _preflight(config, environ=environ, stream=stream)
    return _train(config, environ=environ, dist=dist, stream=stream)


HTTP_CLIENT_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "urllib3", "botocore", "s3fs")
"""The Hub client (huggingface_hub 2.x) logs through httpx2/httpcore2, status patches through httpx."""


def quiet_http_clients() -> None:
    """The HTTP libraries log every request at INFO: one line per status patch would bury the pod log."""
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _preflight(config: TrainerConfig, *, environ: Mapping[str, str], stream: TextIO) -> int:
    from .data import validate_file  # noqa: PLC0415 (kept off the training path's import time)
    from .preflight import run_preflight  # noqa: PLC0415

    result = run_preflight(config, environ=environ, data_validator=validate_file)
    write_termination_message(result, Path(config.termination_log_path))
    for line in describe_result(result):
        print(line, file=stream)
    return result.exit_code


def _train(config: TrainerConfig, *, environ: Mapping[str, str], dist: DistInfo, stream: TextIO) -> int:
    # torch and transformers load here, after argument errors had their chance to show quickly.
    from transformers.utils import logging as transformers_logging  # noqa: PLC0415

    from .pipeline import run_pipeline  # noqa: PLC0415
    from .training.distributed import teardown  # noqa: PLC0415

    # Our reporters show progress; library bars would interleave with them (and fill pod logs).
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # also the hub's bars
    # Kubernetes sends SIGTERM on eviction and preemption: checkpoint within the budget, fail as
    # Internal/Preempted (retried from that checkpoint). `kubetune run --local` calls this in its
    # own process, so the previous handler is put back afterwards.
    preemption = Preemption(budget_seconds=config.runtime.checkpoint_grace_seconds)
    restore_signals = preemption.install()
    reporter, stop, watchdog, warnings = _reporters_and_watchdog(config, environ=environ, dist=dist, stream=stream)
    try:
        result = run_pipeline(
            config,
            environ=environ,
            clock=utc_now,
            reporter=reporter,
            dist=dist,
            preemption=preemption,
            step_watchdog=watchdog,
            warnings=warnings,
        )
    finally:
        restore_signals()
        stop()
        # The run's model is unreferenced now: its process group's threads end here, not at exit.
        teardown()
    # A deadline (SIGTERM's budget, the step watchdog) may have written its Result first: the
    # exit code must be that Result's, or the operator reads a success that exited non-zero.
    standing = read_termination_message(Path(config.termination_log_path))
    return standing.exit_code if standing is not None else result.exit_code


def build_reporter(
    config: TrainerConfig, *, environ: Mapping[str, str], dist: DistInfo, stream: TextIO
) -> tuple[Reporter, Callable[[], None]]:
    """Rank 0's reporters and step watchdog for `config`, and a function stopping the metrics server and
    the watchdog; silence elsewhere."""
    reporter, stop, _, _ = _reporters_and_watchdog(config, environ=environ, dist=dist, stream=stream)
    return reporter, stop


def _reporters_and_watchdog(
    config: TrainerConfig, *, environ: Mapping[str, str], dist: DistInfo, stream: TextIO
) -> tuple[Reporter, Callable[[], None], StepWatchdog | None, list[WarningNote]]:
    """Rank 0's reporters, their stop, the step watchdog, and warnings about sinks asked for that are off."""
    if not dist.is_main:
        return NullReporter(), lambda: None, None, []
    reporters: list[Reporter] = []
    if config.report.kind == "terminal":
        reporters.append(
            TerminalReporter(
                stream, interactive=stream.isatty(), min_interval_seconds=config.report.min_interval_seconds
            )
        )
    elif config.report.kind == "kubernetes":
        try:
            access = InClusterAccess.from_env(environ)
        except RuntimeError as outside:
            # Reporting is an observer: the run (and its termination message) goes on without it.
            logging.getLogger(__name__).warning("progress reporting is off: %s", outside)
        else:
            patcher = StatusPatcher(access=access, job=config.job)
            reporters.append(KubernetesReporter(patcher, min_interval_seconds=config.report.min_interval_seconds))
    warnings: list[WarningNote] = []
    wandb, wandb_off = WandbReporter.start(config, environ=environ, directory=Path(config.runtime.work_dir) / "wandb")
    if wandb is not None:
        reporters.append(wandb)
    if wandb_off is not None:
        warnings.append(wandb_off)
    stops: list[Callable[[], None]] = []
    if config.metrics_port:
        metrics = TrainerMetrics(CollectorRegistry())
        server = serve_metrics(metrics.registry, port=config.metrics_port)
        reporters.append(metrics)
        stops.append(server.shutdown)
    # Fed like the others; when it fires it reports through them (never through itself).
    watchdog = start_step_watchdog(config, reporter=FanOutReporter(list(reporters)), clock=utc_now)
    stops.append(watchdog.stop)

    def stop() -> None:
        for each in stops:
            each()

    return FanOutReporter([*reporters, watchdog]), stop, watchdog, warnings


def entry(argv: Sequence[str] | None = None) -> int:
    """The process entry point: the one place the real environment and streams come in."""
    return main(sys.argv[1:] if argv is None else argv, environ=dict(os.environ), stream=sys.stderr)
