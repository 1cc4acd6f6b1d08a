"""The model card (README.md) saved with every trained model: where it came from and how it was made.

A user who finds the model later, on a PVC, in a bucket or on the Hub, can answer from the card
alone: which repo and which exact commit it was trained from (and, for a LoRA adapter repo, the
base it was merged into), under which template, with which hyperparameters as they really ran,
on which training file (its sha256), and what the losses were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import yaml

from .context import RunContext
from .data.sources import shown_uri
from .handoffs import DownloadResult, TrainingOutcome
from .training.checkpoint_location import ResumeReference
from .training.setup import TrainingSetup


def _kubetune_version() -> str:
    try:
        return version("kubetune")
    except PackageNotFoundError:
        return "unknown"


def render_model_card(
    ctx: RunContext,
    *,
    downloaded: DownloadResult,
    setup: TrainingSetup,
    trained: TrainingOutcome,
    metrics: Mapping[str, float],
    layout: str,
) -> str:
    """The README.md text; `layout` says in a sentence or two which files the model folder holds.

    `metrics` are the run's as the card reports them: Training's, with Saving's output verification.
    """
    config = ctx.config
    snapshot = downloaded.model
    name = config.output.model_name
    repo = config.model.repo
    lora = config.lora
    front_matter = {
        "base_model": repo,
        "library_name": "peft" if lora is not None and not lora.merge else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["kubetune", "fine-tuned", config.model.template.family],
    }
    lineage: list[tuple[str, str]] = [
        ("source repo", f"`{repo}`"),
        ("resolved revision", f"`{snapshot.revision_sha}` (requested `{config.model.revision}`)"),
    ]
    if snapshot.adapter_lineage is not None:
        merged = snapshot.adapter_lineage
        lineage.append(
            (
                "LoRA adapter merged before training",
                f"`{merged.adapter_repo}@{merged.adapter_sha}` into `{merged.base_repo}@{merged.base_sha}`",
            )
        )
    source = continued_from(ctx, resumed_from_step=trained.resumed_from_step)
    if source is not None:
        step = f"step {source['step']}" if source.get("step") is not None else "its newest checkpoint"
        uid = f", uid `{source['uid']}`" if source.get("uid") else ""
        lineage.append(("continued from", f"job `{source['job']}`{uid}, {step} (fromCheckpoint)"))
    facts = snapshot.facts
    lineage.append(("architecture", f"{facts.model_type} ({', '.join(facts.architectures) or '-'})"))
    lineage.append(("parameters (base)", f"{facts.parameters:,}"))
    lineage += [
        ("template", f"`{config.model.template.name}` (family {config.model.template.family})"),
        ("training file", f"`{shown_uri(config.data.training_file)}`, sha256 `{downloaded.training_file.sha256}`"),
    ]
    if config.data.validation_file is not None and downloaded.validation_file is not None:
        lineage.append(
            (
                "validation file",
                f"`{shown_uri(config.data.validation_file)}`, sha256 `{downloaded.validation_file.sha256}`",
            )
        )
    job = config.job
    lineage += [
        ("job", f"`{job.namespace}/{job.name}` (uid `{job.uid}`, attempt {job.attempt})"),
        (
            "chat template",
            "ChatML, kubetune's default (the base had none)"
            if downloaded.default_chat_template
            else "the base model's",
        ),
        ("trained by", f"kubetune {_kubetune_version()}"),
    ]

    as_run: dict[str, object] = {"hyperparameters": config.hyperparameters.to_wire()}
    if downloaded.max_seq_length != config.hyperparameters.max_seq_length:
        as_run["effectiveMaxSeqLength"] = downloaded.max_seq_length
    as_run["lora"] = lora.to_wire() if lora is not None else None
    as_run["precision"] = config.runtime.precision.value
    # The template's precision is for GPUs; what really ran (fp32 on a CPU) is what reproduces the model.
    as_run["device"] = str(setup.device)
    as_run["weightsDtype"] = str(setup.precision.load_dtype).removeprefix("torch.")
    as_run["strategy"] = config.runtime.strategy.value
    as_run["worldSize"] = ctx.dist.world_size

    lines = [
        "---",
        yaml.safe_dump(front_matter, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"Fine-tuned from `{repo}` at commit `{snapshot.revision_sha}` by kubetune "
        f"({'LoRA' if lora is not None else 'full fine-tuning'}).",
        "",
        "## Lineage",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in lineage),
        "",
        "## Hyperparameters as run",
        "",
        "```yaml",
        yaml.safe_dump(as_run, sort_keys=False).rstrip(),
        "```",
        "",
        "## Results",
        "",
        *_results(metrics),
        "",
        "## Files",
        "",
        layout,
        "",
    ]
    if warnings := ctx.journal.warnings:
        lines += ["## Warnings", "", *(f"- {w.reason}: {w.message}" for w in warnings), ""]
    lines += [
        "## Lineage (machine-readable)",
        "",
        "```json",
        json.dumps(_machine_lineage(ctx, downloaded, trained, metrics), indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def _results(metrics: Mapping[str, float]) -> list[str]:
    if not metrics:
        return ["No metrics were recorded."]
    rows = ["| metric | value |", "| --- | --- |"]
    for key in sorted(metrics):
        value = metrics[key]
        rows.append(f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |")
    return rows


def continued_from(ctx: RunContext, *, resumed_from_step: int | None) -> dict[str, object] | None:
    """The job and step a fromCheckpoint job continued: `{job, uid, step}` (step None: not known here).

    `resumed_from_step` is the step Training loaded.
    """
    runtime = ctx.config.runtime
    if runtime.from_checkpoint is None:
        return None
    source = ResumeReference.parse(runtime.from_checkpoint)
    step = source.step
    if step is None and runtime.resume_from == runtime.from_checkpoint:  # this attempt loaded the source itself
        step = resumed_from_step
    return {"job": source.job, "uid": source.uid, "step": step}


def _machine_lineage(
    ctx: RunContext, downloaded: DownloadResult, trained: TrainingOutcome, metrics: Mapping[str, float]
) -> dict[str, object]:
    config = ctx.config
    lineage: dict[str, object] = {
        "sourceRepo": config.model.repo,
        "revisionSha": downloaded.model.revision_sha,
        "template": config.model.template.name,
        "trainingFile": shown_uri(config.data.training_file),
        "trainingFileSha256": downloaded.training_file.sha256,
        "metrics": dict(sorted(metrics.items())),
    }
    if (source := continued_from(ctx, resumed_from_step=trained.resumed_from_step)) is not None:
        lineage["fromCheckpoint"] = source
    if (merged := downloaded.model.adapter_lineage) is not None:
        lineage["mergedAdapter"] = {
            "adapterRepo": merged.adapter_repo,
            "adapterSha": merged.adapter_sha,
            "baseRepo": merged.base_repo,
            "baseSha": merged.base_sha,
        }
    return lineage
