"""ResolvedJob -> the contract's `TrainerConfig`: what the ConfigMap holds and `kubetune run --local` runs.

Secrets never enter the config: it names the environment variables that hold them, and the pod
spec fills those from Secret references (a local run from the user's own environment).
"""

from __future__ import annotations

from kubetune_trainer.contract import (
    DEFAULT_STEP_WATCHDOG_FLOOR_SECONDS,
    DataSource,
    JobIdentity,
    ModelSource,
    OutputTarget,
    ReportTarget,
    RuntimeSettings,
    TrainerConfig,
    WandbTarget,
)

from ..api.record import ResolvedJob

HF_TOKEN_ENV = "HF_TOKEN"
"""The variable huggingface_hub itself reads, so the token works with no extra wiring."""
WANDB_API_KEY_ENV = "WANDB_API_KEY"
"""The variable wandb itself reads."""
DEFAULT_WANDB_PROJECT = "kubetune"


def build_trainer_config(
    resolved: ResolvedJob,
    *,
    job: JobIdentity,
    report: ReportTarget,
    resume_from: str | None = None,
    checkpoint_grace_seconds: float = 25.0,
    metrics_port: int = 0,
    step_watchdog_floor_seconds: float | None = None,
    pvc_mount_root: str = "/mnt/pvc",
    cache_dir: str = "/cache/hf",
    work_dir: str = "/work",
) -> TrainerConfig:
    """The trainer's whole input for one attempt of `job`.

    `resume_from` is the checkpoint this attempt starts from (`<job>[:<step>]`); absent, the
    job's own `fromCheckpoint` is used, so a first attempt continues another job and a retry
    (given its own newest checkpoint) continues itself.
    """
    wandb = resolved.wandb
    return TrainerConfig(
        job=job,
        model=ModelSource(
            repo=resolved.model_repo,
            # Pinned at admission: a branch moved since then does not change what a retry trains.
            revision=resolved.revision_sha or resolved.revision,
            token_env=HF_TOKEN_ENV if resolved.hf_token_secret_ref is not None else None,
            template=resolved.template,
        ),
        data=DataSource(
            training_file=resolved.training_file,
            validation_file=resolved.validation_file,
            pvc_mount_root=pvc_mount_root,
        ),
        hyperparameters=resolved.hyperparameters,
        lora=resolved.lora,
        output=OutputTarget(uri=resolved.output_uri, model_name=resolved.output_name, private=resolved.output_private),
        runtime=RuntimeSettings(
            precision=resolved.precision,
            master_weights=resolved.master_weights,
            strategy=resolved.strategy,
            gradient_checkpointing=resolved.gradient_checkpointing,
            attention=resolved.attention,
            compile=resolved.compile,
            checkpoint_uri=resolved.checkpoint_uri,
            checkpoint_root=resolved.checkpoint_root,
            resume_from=resume_from or resolved.from_checkpoint,
            from_checkpoint=resolved.from_checkpoint,
            checkpoint_grace_seconds=checkpoint_grace_seconds,
            cache_dir=cache_dir,
            work_dir=work_dir,
            step_watchdog_floor_seconds=DEFAULT_STEP_WATCHDOG_FLOOR_SECONDS
            if step_watchdog_floor_seconds is None
            else step_watchdog_floor_seconds,
        ),
        report=report,
        wandb=None
        if wandb is None
        else WandbTarget(
            project=wandb.project or DEFAULT_WANDB_PROJECT,
            entity=wandb.entity,
            name=wandb.name or job.name,
            base_url=wandb.base_url,
            api_key_env=WANDB_API_KEY_ENV,
        ),
        metrics_port=metrics_port,
    )
