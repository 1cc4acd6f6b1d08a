"""Metrics to Weights & Biases when a job sets `wandb`: a `Reporter` that logs every step and evaluation.

The API key comes from the environment variable the config names (the pod fills it from the
job's Secret); it is handed to wandb's settings and never logged. W&B is an observer: if it
cannot start (a refused key, an unreachable server) the run trains on, and says so where the user
looks: a `WandbOff` warning in the Result, which the operator puts in status.warnings with an Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .contract import Outcome, Progress, Result, Stage, StageRecord, StageState, TrainerConfig, WarningNote

log = logging.getLogger(__name__)
WANDB_OFF = "WandbOff"


class WandbReporter:
    def __init__(self, run: Any) -> None:
        self._run = run

    @classmethod
    def start(
        cls, config: TrainerConfig, *, environ: Mapping[str, str], directory: Path
    ) -> tuple[WandbReporter | None, WarningNote | None]:
        """Start the W&B run for `config.wandb`: the reporter, or None and the warning saying why W&B is off."""
        target = config.wandb
        if target is None:
            return None, None
        key = environ.get(target.api_key_env) or ""
        try:
            import wandb  # noqa: PLC0415 (an optional extra, imported only when a job asks for it)

            settings = wandb.Settings.model_validate(
                {
                    "api_key": environ.get(target.api_key_env) or None,
                    "base_url": target.base_url or "https://api.wandb.ai",
                    # WANDB_MODE=offline writes the run to disk only (tests, air-gapped clusters).
                    "mode": environ.get("WANDB_MODE") or "online",
                    "silent": True,
                }
            )
            directory.mkdir(parents=True, exist_ok=True)
            run = wandb.init(
                project=target.project,
                entity=target.entity,
                name=target.name,
                dir=str(directory),
                # One W&B run per attempt, so a retry does not overwrite the failed attempt's curves.
                id=f"{config.job.uid}-a{config.job.attempt}",
                config={
                    "model": config.model.repo,
                    "revision": config.model.revision,
                    "template": config.model.template.name,
                    "hyperparameters": config.hyperparameters.to_wire(),
                    "lora": config.lora.to_wire() if config.lora else None,
                },
                settings=settings,
            )
        except Exception as failed:  # W&B is optional: no failure of its own may stop training
            detail = f"{type(failed).__name__}: {failed}"
            if key:
                detail = detail.replace(key, "<api key>")
            where = target.base_url or "https://api.wandb.ai"
            log.warning("Weights & Biases logging is off: %s", detail)
            note = WarningNote(
                reason=WANDB_OFF,
                message=f"Weights & Biases logging is off: W&B at {where} refused the run or could not be reached "
                f"({detail[:300]}); training went on without it. Check the key in spec.wandb.apiKeySecretRef and "
                "spec.wandb.baseUrl",
            )
            return None, note
        return cls(run), None

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        record = stages[-1]
        if record.state is not StageState.RUNNING and record.start_time and record.end_time:
            seconds = (record.end_time - record.start_time).total_seconds()
            self._safely(lambda: self._run.summary.update({f"stage/{stage.value}_seconds": seconds}))

    def progress(self, progress: Progress) -> None:
        values = {
            "train/loss": progress.loss,
            "train/learning_rate": progress.learning_rate,
            "train/tokens_per_second": progress.tokens_per_second,
            "train/mfu": progress.mfu,
            "train/peak_gpu_memory_bytes": progress.peak_gpu_memory_bytes,
            "train/epoch": progress.epoch,
            "eval/loss": progress.eval_loss,
        }
        if progress.preference is not None:
            values |= {
                "train/rewards/accuracy": progress.preference.reward_accuracy,
                "train/rewards/margin": progress.preference.reward_margin,
                "train/logps/chosen": progress.preference.chosen_logps,
                "train/logps/rejected": progress.preference.rejected_logps,
            }
        data = {key: value for key, value in values.items() if value is not None}
        if data:
            self._safely(lambda: self._run.log(data, step=progress.step))

    def note(self, message: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        summary: dict[str, Any] = {"outcome": result.outcome.value}
        if result.error is not None:
            summary |= {"error/class": result.error.error_class.value, "error/reason": result.error.reason}
        self._safely(lambda: self._run.summary.update(summary))
        self._safely(lambda: self._run.finish(exit_code=0 if result.outcome is Outcome.SUCCEEDED else 1))
        # finish() can return before wandb's own process has written everything; wait for it,
        # so the run's files are complete before the pod exits.
        self._safely(self._teardown)

    @staticmethod
    def _teardown() -> None:
        import wandb  # noqa: PLC0415 (imported already when this reporter exists)

        wandb.teardown()

    def _safely(self, call: Any) -> None:
        try:
            call()
        except Exception as failed:  # an observer's failure never stops training
            log.warning("Weights & Biases: %s: %s", type(failed).__name__, failed)
