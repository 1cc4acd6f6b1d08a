"""Rank 0's Prometheus metrics: step, loss, learning rate, tokens per second, peak GPU memory and MFU
(on a GPU; never set on a CPU), the stage running and
the time of the last completed step (the heartbeat that stall alerts compare with `time()`).

The metrics live on their own `CollectorRegistry` (never the process-global default), passed in,
and are fed as a `Reporter`: whatever the loop reports, the scrape sees. The chart's PodMonitor
scrapes `metricsPort` of trainer pods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from .contract import Progress, Result, Stage, StageRecord, StageState


class TrainerMetrics:
    """Gauges updated from progress reports; a `Reporter`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.step = Gauge("kubetune_trainer_step", "Optimizer steps completed.", registry=registry)
        self.total_steps = Gauge("kubetune_trainer_total_steps", "Optimizer steps in the run.", registry=registry)
        self.loss = Gauge("kubetune_trainer_loss", "Training loss of the last step.", registry=registry)
        self.eval_loss = Gauge("kubetune_trainer_eval_loss", "Loss on the validation file.", registry=registry)
        self.learning_rate = Gauge(
            "kubetune_trainer_learning_rate", "Learning rate of the last step.", registry=registry
        )
        self.tokens_per_second = Gauge(
            "kubetune_trainer_tokens_per_second", "Trained (non-pad) tokens per second.", registry=registry
        )
        # trainingMethod dpo: the last step's preference metrics (absent for sft).
        self.reward_accuracy = Gauge(
            "kubetune_trainer_reward_accuracy",
            "DPO: share of the last step's pairs whose preferred output has the higher reward.",
            registry=registry,
        )
        self.reward_margin = Gauge(
            "kubetune_trainer_reward_margin", "DPO: mean preferred minus non-preferred reward.", registry=registry
        )
        self.chosen_logps = Gauge(
            "kubetune_trainer_chosen_logps", "DPO: mean log-probability of the preferred outputs.", registry=registry
        )
        self.rejected_logps = Gauge(
            "kubetune_trainer_rejected_logps",
            "DPO: mean log-probability of the non-preferred outputs.",
            registry=registry,
        )
        # Registered at their first value: on a CPU (or a GPU without a known peak) they stay absent
        # from the scrape, rather than reading 0.
        self.peak_gpu_memory: Gauge | None = None
        self.mfu: Gauge | None = None
        # Set from each report's heartbeat_time: alerts fire on `time() - this` growing, so it holds
        # unix seconds rather than an age that would only change when a report arrives.
        self.last_step_timestamp = Gauge(
            "kubetune_trainer_last_step_timestamp_seconds",
            "Unix time of the last completed optimizer step (the training heartbeat).",
            registry=registry,
        )
        # One series per stage (five at most): 1 for the stage running, 0 for the others.
        self.stage = Gauge("kubetune_trainer_stage", "1 for the stage running now.", ["stage"], registry=registry)
        for known in Stage:
            self.stage.labels(stage=known.value).set(0)

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        running = stages[-1].state is StageState.RUNNING
        for known in Stage:
            self.stage.labels(stage=known.value).set(1 if running and known is stage else 0)

    def progress(self, progress: Progress) -> None:
        self.step.set(progress.step)
        if progress.total_steps is not None:
            self.total_steps.set(progress.total_steps)
        if progress.heartbeat_time is not None:
            self.last_step_timestamp.set(progress.heartbeat_time.timestamp())
        for gauge, value in (
            (self.loss, progress.loss),
            (self.eval_loss, progress.eval_loss),
            (self.learning_rate, progress.learning_rate),
            (self.tokens_per_second, progress.tokens_per_second),
            *_preference_values(self, progress),
        ):
            if value is not None:
                gauge.set(value)
        if progress.peak_gpu_memory_bytes is not None:
            if self.peak_gpu_memory is None:
                self.peak_gpu_memory = Gauge(
                    "kubetune_trainer_peak_gpu_memory_bytes",
                    "Most GPU memory rank 0's tensors have held (torch.cuda.max_memory_allocated).",
                    registry=self.registry,
                )
            self.peak_gpu_memory.set(progress.peak_gpu_memory_bytes)
        if progress.mfu is not None:
            if self.mfu is None:
                self.mfu = Gauge(
                    "kubetune_trainer_mfu",
                    "Model FLOPs utilization: 6 x parameters x tokens/s over the GPUs' dense bf16 peak (0 to 1).",
                    registry=self.registry,
                )
            self.mfu.set(progress.mfu)

    def note(self, message: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass


def _preference_values(metrics: TrainerMetrics, progress: Progress) -> list[tuple[Gauge, float | None]]:
    preference = progress.preference
    if preference is None:
        return []
    return [
        (metrics.reward_accuracy, preference.reward_accuracy),
        (metrics.reward_margin, preference.reward_margin),
        (metrics.chosen_logps, preference.chosen_logps),
        (metrics.rejected_logps, preference.rejected_logps),
    ]


def serve_metrics(registry: CollectorRegistry, *, port: int, address: str = "0.0.0.0") -> Any:
    """Serve `registry` over HTTP on `port` from a daemon thread; returns the server (shut it down to stop)."""
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
